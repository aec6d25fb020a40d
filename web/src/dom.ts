// A few helpers to build the page from elements (never from HTML text:
// everything the API says is inserted as text).

import { ApiError } from './api';

type Child = Node | string | number | null | undefined | false;
type Handler = (event: Event) => void;
export type Props = Record<string, string | number | boolean | Handler | undefined | null>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props | null = null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value as Handler);
    } else if (key === 'class') {
      el.className = String(value);
    } else if (key === 'for') {
      (el as HTMLLabelElement).htmlFor = String(value);
    } else if (key === 'value') {
      (el as HTMLInputElement).value = String(value);
    } else if (key === 'checked' || key === 'disabled' || key === 'hidden' || key === 'required' || key === 'selected') {
      (el as unknown as Record<string, boolean>)[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

export function clear(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

let counter = 0;
/** A fresh element id, so each `<label for>` finds its control. */
export function uid(prefix: string): string {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled control: `<label for>` and the control, with an optional hint. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  if (!control.id) control.id = uid('f');
  let hintEl: HTMLElement | null = null;
  if (hint) {
    hintEl = h('small', { id: control.id + '-hint', class: 'hint' }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl);
}

/** A checkbox with its label after it. */
export function checkbox(label: string, checked = false, props: Props = {}): { el: HTMLElement; input: HTMLInputElement } {
  const input = h('input', { type: 'checkbox', id: uid('c'), checked, ...props });
  return { el: h('div', { class: 'check' }, input, h('label', { for: input.id }, label)), input };
}

export function select(options: [string, string][], value?: string, props: Props = {}): HTMLSelectElement {
  const el = h('select', props, options.map(([v, text]) => h('option', { value: v }, text)));
  if (value !== undefined) el.value = value;
  return el;
}

/** The place next to a control where its errors appear. */
export function errorSlot(): HTMLElement {
  return h('p', { class: 'error', role: 'alert', hidden: true });
}

export function describe(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

export function showError(slot: HTMLElement, e: unknown): void {
  slot.textContent = describe(e);
  slot.hidden = false;
}

export function hideError(slot: HTMLElement): void {
  slot.textContent = '';
  slot.hidden = true;
}

/**
 * Runs `action` for `button`: the button is disabled meanwhile, and a
 * failure is written into `slot` (next to the button). True on success.
 */
export async function run(button: HTMLButtonElement, slot: HTMLElement, action: () => Promise<void>): Promise<boolean> {
  hideError(slot);
  button.disabled = true;
  try {
    await action();
    return true;
  } catch (e) {
    showError(slot, e);
    return false;
  } finally {
    button.disabled = false;
  }
}

/** A button that runs `action`, with its error slot right after it. */
export function actionButton(label: string, action: () => Promise<void>, props: Props = {}): HTMLElement {
  const slot = errorSlot();
  const button = h('button', { type: 'button', ...props }, label);
  button.addEventListener('click', () => void run(button, slot, action));
  return h('span', { class: 'action' }, button, slot);
}

/** A modal dialog; `close()` removes it. Escape closes it too. */
export function modal(title: string, ...content: (Child | Child[])[]): { dialog: HTMLDialogElement; close: () => void } {
  const heading = h('h2', { id: uid('dialog-title') }, title);
  const dialog = h('dialog', { 'aria-labelledby': heading.id }, heading, ...content);
  const close = () => {
    dialog.close();
    dialog.remove();
  };
  dialog.addEventListener('close', () => dialog.remove());
  document.body.appendChild(dialog);
  dialog.showModal();
  return { dialog, close };
}

/**
 * Asks before something that cannot be undone. Resolves after `action`
 * succeeded (true) or the user cancelled (false); errors stay in the
 * dialog, next to its button.
 */
export function confirmAction(title: string, text: string, confirmLabel: string, action: () => Promise<void>): Promise<boolean> {
  return new Promise((resolve) => {
    const slot = errorSlot();
    const ok = h('button', { type: 'submit', class: 'danger' }, confirmLabel);
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const form = h('form', { method: 'dialog' }, h('p', null, text), h('div', { class: 'buttons' }, ok, cancel), slot);
    const { dialog, close } = modal(title, form);
    let done = false;
    dialog.addEventListener('close', () => {
      if (!done) resolve(false);
    });
    cancel.addEventListener('click', () => close());
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (await run(ok, slot, action)) {
        done = true;
        close();
        resolve(true);
      }
    });
  });
}

export function when(ms: number | null | undefined): string {
  if (!ms) return '—';
  return new Date(ms).toLocaleString();
}

export function table(headers: string[], rows: Node[][], caption?: string): HTMLTableElement {
  return h(
    'table',
    null,
    caption ? h('caption', null, caption) : null,
    h('thead', null, h('tr', null, headers.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, rows.map((cells) => h('tr', null, cells.map((c) => h('td', null, c))))),
  );
}

export function text(value: string | number | null | undefined): Text {
  return document.createTextNode(value === null || value === undefined ? '—' : String(value));
}
