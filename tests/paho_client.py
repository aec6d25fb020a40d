"""Eclipse paho (Python) against Gatehouse: subscribe, publish QoS 1,
receive, for MQTT 3.1.1 and 5.0. Run by tests/real_clients.rs with the
broker's port; exits 0 on success, non-zero with a message otherwise."""
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

port = int(sys.argv[1])

for protocol, name in ((mqtt.MQTTv311, "3.1.1"), (mqtt.MQTTv5, "5.0")):
    got = threading.Event()
    subscribed = threading.Event()
    received = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-{name}", protocol=protocol)
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe("paho/test", qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p=None: subscribed.set()

    def on_message(c, u, msg):
        received.append((msg.topic, msg.payload, msg.qos))
        got.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    if not subscribed.wait(5):
        sys.exit(f"{name}: no SUBACK")
    client.publish("paho/test", b"hello from paho", qos=1).wait_for_publish(5)
    if not got.wait(5):
        sys.exit(f"{name}: message not received")
    client.disconnect()
    client.loop_stop()
    if received[0] != ("paho/test", b"hello from paho", 1):
        sys.exit(f"{name}: unexpected {received[0]!r}")
    print(f"paho {name} ok")
