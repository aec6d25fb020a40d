// Builds the admin page into dist/: the TypeScript bundle and its style
// sheet (esbuild, names carrying a hash of their content), the icon
// (hashed here), and index.html naming them. Deterministic: CI rebuilds
// from the lockfile and compares with the committed dist/ byte for byte.
import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';

const here = new URL('.', import.meta.url).pathname;
// `--out DIR` builds elsewhere (CI compares that with the committed dist/).
const outArg = process.argv.indexOf('--out');
const dist = outArg > 0 ? resolve(process.argv[outArg + 1]) : `${here}dist`;
rmSync(dist, { recursive: true, force: true });
mkdirSync(`${dist}/assets`, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.ts' },
  bundle: true,
  format: 'iife',
  target: 'es2022',
  platform: 'browser',
  outdir: dist,
  entryNames: 'assets/[name]-[hash]',
  assetNames: 'assets/[name]-[hash]',
  minify: true,
  legalComments: 'none',
  charset: 'utf8',
  metafile: true,
  logLevel: 'warning',
});

const entries = Object.entries(result.metafile.outputs).filter(([, out]) => out.entryPoint === 'src/main.ts');
if (entries.length !== 1 || !entries[0][1].cssBundle) throw new Error('expected one bundle with its style sheet');
const js = basename(entries[0][0]);
const css = basename(entries[0][1].cssBundle);

// esbuild's hash alphabet and length, for a file it does not bundle.
const icon = readFileSync(`${here}src/icon.svg`);
const iconHash = createHash('sha256').update(icon).digest('base64url').replace(/[-_]/g, '').slice(0, 8).toUpperCase();
const iconName = `icon-${iconHash}.svg`;
writeFileSync(`${dist}/assets/${iconName}`, icon);

const html = readFileSync(`${here}src/index.html`, 'utf8')
  .replaceAll('{{js}}', `/admin/assets/${js}`)
  .replaceAll('{{css}}', `/admin/assets/${css}`)
  .replaceAll('{{icon}}', `/admin/assets/${iconName}`);
if (html.includes('{{')) throw new Error('index.html: a placeholder was not filled');
writeFileSync(`${dist}/index.html`, html);
console.log(`built dist/index.html, assets/${js}, assets/${css}, assets/${iconName}`);
