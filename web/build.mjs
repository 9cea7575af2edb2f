// Builds the web client into dist/: index.html, a hashed JS bundle and
// stylesheet under assets/, and the static files from public/.
// Usage: node build.mjs [--dev]   (--dev: unminified, with source maps)
//
// The build goes to a fresh directory first, and only files whose
// contents changed are written to dist/: the server embeds dist/ and is
// rebuilt when a file in it is touched, unchanged or not.
import { build } from 'esbuild';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const target = join(root, 'dist');
const dist = join(root, 'dist.new');
const dev = process.argv.includes('--dev');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

// livekit-client's end-to-end encryption worker, loaded by the app for
// meetings opened with a key.
const worker = await build({
  absWorkingDir: root,
  entryPoints: { 'e2ee-worker': 'livekit-client/e2ee-worker' },
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome111', 'firefox115', 'safari16'],
  outdir: dist,
  entryNames: 'assets/[name]-[hash]',
  minify: !dev,
  sourcemap: dev ? 'linked' : false,
  legalComments: 'eof',
  metafile: true,
  logLevel: 'warning',
});
const workerOut = Object.keys(worker.metafile.outputs).find((o) => o.endsWith('.js'));
if (!workerOut) throw new Error('no output for the e2ee worker');
const workerUrl = '/' + relative(dist, join(root, workerOut)).split('\\').join('/');

const result = await build({
  absWorkingDir: root,
  entryPoints: { app: 'src/main.ts', style: 'src/styles.css' },
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome111', 'firefox115', 'safari16'],
  outdir: dist,
  entryNames: 'assets/[name]-[hash]',
  assetNames: 'assets/[name]-[hash]',
  minify: !dev,
  sourcemap: dev ? 'linked' : false,
  legalComments: 'eof',
  metafile: true,
  // Files from public/ are served at the site root as they are.
  external: ['/favicon.svg'],
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': dev ? '"development"' : '"production"', __E2EE_WORKER__: JSON.stringify(workerUrl) },
});

// Find the emitted names of both entry points.
const outputs = Object.entries(result.metafile.outputs);
const outputFor = (entry) => {
  const found = outputs.find(([, meta]) => meta.entryPoint === entry);
  if (!found) throw new Error(`no output for ${entry}`);
  return '/' + relative(dist, join(root, found[0])).split('\\').join('/');
};
const js = outputFor('src/main.ts');
const css = outputFor('src/styles.css');

const template = await readFile(join(root, 'src/index.html'), 'utf8');
const html = template.replaceAll('%APP_JS%', js).replaceAll('%APP_CSS%', css);
if (html.includes('%APP_')) throw new Error('unreplaced placeholder in index.html');
await writeFile(join(dist, 'index.html'), html);
await cp(join(root, 'public'), dist, { recursive: true });
await sync(dist, target);
await rm(dist, { recursive: true, force: true });

console.log(`built ${relative(root, target)}/: index.html, ${js.slice(1)}, ${css.slice(1)}, ${workerUrl.slice(1)}`);

/** Makes `to` hold what `from` holds, writing only files that differ. */
async function sync(from, to) {
  await mkdir(to, { recursive: true });
  const have = new Set(await readdir(to));
  for (const entry of await readdir(from, { withFileTypes: true })) {
    have.delete(entry.name);
    const src = join(from, entry.name);
    const dst = join(to, entry.name);
    if (entry.isDirectory()) {
      await sync(src, dst);
      continue;
    }
    const data = await readFile(src);
    const old = await readFile(dst).catch(() => null);
    if (old === null || !old.equals(data)) await writeFile(dst, data);
  }
  for (const name of have) await rm(join(to, name), { recursive: true, force: true });
}
