// Transformers.js in a real headless Chromium (onnxruntime-web, WASM). Usage: node browser.mjs request.json
// Serves page.html, Transformers.js, the onnxruntime-web WASM files and the model folder from 127.0.0.1,
// drives Debian's chromium with playwright-core, and records every request the browser makes.
import { createReadStream, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TYPES = {
    '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
    '.json': 'application/json', '.txt': 'text/plain',
};
// DESIGN.md's flags, and no name resolves but 127.0.0.1's: nothing can leave the machine even by mistake.
const FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'];
// WASM runs on the CPU: no GPU process. Headless Chromium offers WebGPU (navigator.gpu, to a page from
// 127.0.0.1: a secure context) with --enable-unsafe-webgpu; on a machine without a GPU its adapter is
// SwiftShader, a software Vulkan on the CPU (measured on Chromium 150: vendor google, architecture
// swiftshader, isFallbackAdapter true, no shader-f16). Other flags (--use-angle, Vulkan) changed nothing.
const DEVICE_FLAGS = {
    wasm: ['--disable-gpu'],
    webgpu: ['--enable-unsafe-webgpu'],
};

function serve(roots) {
    const served = [];
    const server = http.createServer((req, res) => {
        const url = new URL(req.url, 'http://127.0.0.1');
        served.push(url.pathname);
        const prefix = Object.keys(roots).find((p) => url.pathname.startsWith(p));
        const root = prefix && roots[prefix];
        const file = root && path.resolve(root, '.' + decodeURIComponent(url.pathname.slice(prefix.length - 1)));
        let size = -1;
        try {
            if (file && (file === root || file.startsWith(root + path.sep)) && statSync(file).isFile()) size = statSync(file).size;
        } catch { /* not found */ }
        const headers = {
            // Cross-origin isolation gives the page SharedArrayBuffer, which WASM threads need.
            'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
            'Cross-Origin-Resource-Policy': 'same-origin', 'Cache-Control': 'no-store',
        };
        if (size < 0) {
            res.writeHead(404, headers).end();
            return;
        }
        res.writeHead(200, { ...headers, 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'Content-Length': size });
        if (req.method === 'HEAD') res.end();
        else createReadStream(file).pipe(res);
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, served })));
}

// The peak resident memory of the tab's renderer process (Linux /proc; null elsewhere).
function rendererPeakMb() {
    const children = (pid) => {
        try {
            return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
        } catch {
            return [];
        }
    };
    let peak = null;
    const stack = children(process.pid);
    while (stack.length) {
        const pid = stack.pop();
        stack.push(...children(pid));
        try {
            if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=renderer')) continue;
            const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
            peak = Math.max(peak ?? 0, kb / 1024);
        } catch { /* the process ended meanwhile */ }
    }
    return peak;
}

// WASM, or WebGPU on the adapter that ran it, named so that a software adapter's latency is not taken for a GPU's.
function backend({ device, adapter }) {
    if (device !== 'webgpu') return 'WASM';
    const name = [adapter?.vendor, adapter?.architecture, adapter?.description].filter(Boolean).join(' ') || 'unnamed adapter';
    return `WebGPU on ${name}${software(adapter) ? ', software adapter' : ''}`;
}

function software(adapter) {
    return Boolean(adapter?.fallback) || /swiftshader|llvmpipe|software/i.test(JSON.stringify(adapter ?? {}));
}

async function main() {
    const request = JSON.parse(readFileSync(process.argv[2], 'utf8'));
    const { chromium } = createRequire(path.join(request.packages, 'package.json'))('playwright-core');
    const roots = {
        '/harness/': HERE,
        '/node_modules/': path.join(request.packages, 'node_modules'),
        '/models/': path.resolve(request.model_root),
    };
    const { server, served } = await serve(roots);
    const origin = `http://127.0.0.1:${server.address().port}`;
    const requests = [];
    const context = await chromium.launchPersistentContext(request.profile, {
        executablePath: request.chromium, headless: true, args: [...FLAGS, ...DEVICE_FLAGS[request.web_device ?? 'wasm']],
    });
    try {
        context.on('request', (r) => requests.push(r.url()));
        const page = context.pages()[0] ?? await context.newPage();
        const errors = [];
        page.on('pageerror', (error) => errors.push(error.message));
        await page.goto(`${origin}/harness/page.html`);
        await page.waitForFunction(() => window.edgePack !== undefined || window.edgePackError !== undefined);
        const loadError = await page.evaluate(() => window.edgePackError);
        if (loadError) throw new Error(`the page could not load Transformers.js: ${loadError}`);
        const { samples, latency, ...rest } = request;
        const result = await page.evaluate((req) => window.edgePack(req), { ...rest, samples, latency });
        if (result.error) throw new Error(result.error);
        const peak = rendererPeakMb();
        const local = (url) => url.startsWith(origin + '/') || url.startsWith('data:') || url.startsWith('blob:');
        writeFileSync(request.result, JSON.stringify({
            ...result,
            peak_rss_mb: peak,
            software_adapter: result.device === 'webgpu' && software(result.adapter),
            runtime: `Transformers.js ${result.version} (Chromium ${result.browser}, onnxruntime-web ${result.ort} ${backend(result)})`,
            host: { system: process.platform, machine: process.arch, browser: result.userAgent, threads: result.threads, cross_origin_isolated: result.isolated,
                ...(result.adapter ? { webgpu_adapter: result.adapter } : {}) },
            requests,
            local_requests: requests.filter(local).length,
            outside_requests: requests.filter((url) => !local(url)),
            served,
        }));
    } finally {
        await context.close();
        server.close();
    }
}

main().catch((error) => {
    console.error(String(error?.message ?? error).replace(/\s+/g, ' ').trim());
    process.exit(1);
});
