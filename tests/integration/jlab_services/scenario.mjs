// Drive one kernel through a Jupyter server with JupyterLab's own client library,
// @jupyterlab/services (the 7.x line JupyterLab 4 ships), as JupyterLab itself does:
// ServerConnection settings, KernelSpecManager, KernelManager and KernelConnection.
//
// Usage: node scenario.mjs BASE_URL TOKEN [--framing v1|legacy]
//   (or the environment: KY_BASE_URL, KY_TOKEN, KY_FRAMING; default framing: v1)
//
// Framing: KernelConnection always offers the one subprotocol it knows,
// v1.kernel.websocket.jupyter.org, and (de)serializes according to what the server
// accepted (ws.protocol); when the server accepts none it speaks the legacy JSON /
// binary-buffer framing. There is no client option to choose; "legacy" here passes
// a WebSocket class that offers no subprotocol, which is exactly what JupyterLab
// ends up doing against a server without v1 support (its reconnect without
// subprotocols).
//
// Prints one JSON line of results on stdout and exits 0; on any failure (or a step
// outliving its timeout) prints the reason on stderr and exits 1. The library's own
// console output goes to stderr.

import { format } from 'node:util';

import services from '@jupyterlab/services';
import WebSocket from 'ws';

const { KernelManager, KernelSpecManager, ServerConnection } = services;

// The library logs with console.debug / console.log ("Starting WebSocket: ..."),
// which Node writes to stdout: keep stdout for our one JSON line.
for (const level of ['log', 'info', 'debug', 'warn', 'error']) {
  console[level] = (...args) => process.stderr.write(`[${level}] ${format(...args)}\n`);
}

// In a browser an unhandled rejection inside the library is a console error and the
// page goes on; Node would exit. Do as the browser does, and report them.
const unhandledRejections = [];
process.on('unhandledRejection', reason => {
  const text = String(reason?.message ?? reason);
  unhandledRejections.push(text);
  process.stderr.write(`unhandled rejection: ${reason?.stack ?? reason}\n`);
});

const STEP_TIMEOUT_MS = 30_000;
const TOTAL_TIMEOUT_MS = 150_000;

function parseArgs(argv) {
  const positional = [];
  let framing = process.env.KY_FRAMING || 'v1';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--framing') {
      framing = argv[++i];
    } else if (arg.startsWith('--framing=')) {
      framing = arg.slice('--framing='.length);
    } else {
      positional.push(arg);
    }
  }
  const baseUrl = positional[0] ?? process.env.KY_BASE_URL;
  const token = positional[1] ?? process.env.KY_TOKEN ?? '';
  if (!baseUrl) {
    throw new Error('usage: node scenario.mjs BASE_URL TOKEN [--framing v1|legacy]');
  }
  if (framing !== 'v1' && framing !== 'legacy') {
    throw new Error(`unknown framing ${JSON.stringify(framing)} (v1 or legacy)`);
  }
  return { baseUrl, token, framing };
}

function fail(message) {
  process.stderr.write(`scenario failed: ${message}\n`);
  process.exit(1);
}

// A hard stop for the whole script, whatever hangs.
const watchdog = setTimeout(
  () => fail(`the whole scenario took more than ${TOTAL_TIMEOUT_MS} ms`),
  TOTAL_TIMEOUT_MS
);

/** Run one named step, failing it if it takes longer than `ms`. */
async function step(name, fn, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([fn(), timeout]);
  } catch (err) {
    err.message = `${name}: ${err.message}`;
    if (lastExecute !== null) {
      err.message += `\n  latest execute_request: ${JSON.stringify(lastExecute.code)}`;
      err.message += `\n  it got: ${lastExecute.trace.join(', ') || 'nothing'}`;
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

/** The WebSocket classes given to the library; they record the sockets they open. */
const sockets = [];

class RecordingWebSocket extends WebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, options);
    sockets.push(this);
    // Diagnostics on stderr: why a socket did not open or closed.
    const where = String(url).replace(/token=[^&]*/, 'token=...');
    this.on('unexpected-response', (_req, res) =>
      process.stderr.write(`websocket ${where}: HTTP ${res.statusCode}\n`)
    );
    this.on('error', err => process.stderr.write(`websocket ${where}: ${err.message}\n`));
    this.on('close', (code, reason) =>
      process.stderr.write(`websocket ${where}: closed ${code} ${reason}\n`)
    );
  }
}

class NoSubprotocolWebSocket extends RecordingWebSocket {
  constructor(url, _protocols, options) {
    super(url, [], options);
  }
}

/** Node's fetch, logging every request and its response status on stderr. */
async function tracingFetch(input, init) {
  const request = new Request(input, init);
  const where = `${request.method} ${request.url.replace(/token=[^&]*/, 'token=...')}`;
  try {
    const response = await fetch(request);
    process.stderr.write(`http ${where}: ${response.status}\n`);
    return response;
  } catch (err) {
    process.stderr.write(`http ${where}: ${err.message}\n`);
    throw err;
  }
}

let lastExecute = null;

/** Execute `code`; resolve with the reply content, stream text and iopub message types. */
async function execute(kernel, code, hooks = {}) {
  const future = kernel.requestExecute({ code, allow_stdin: Boolean(hooks.onStdin) });
  let stdout = '';
  let stderr = '';
  const iopub = [];
  // What this request got so far, for the message of a step that times out.
  const trace = [];
  const t0 = Date.now();
  lastExecute = { code, trace, t0 };
  const note = msg => {
    const state = msg.header.msg_type === 'status' ? `=${msg.content.execution_state}` : '';
    trace.push(`+${Date.now() - t0}ms ${msg.channel}:${msg.header.msg_type}${state}`);
  };
  future.onReply = note;
  future.onIOPub = msg => {
    note(msg);
    iopub.push(msg.header.msg_type);
    if (msg.header.msg_type === 'stream') {
      if (msg.content.name === 'stdout') {
        stdout += msg.content.text;
      } else {
        stderr += msg.content.text;
      }
    }
    hooks.onIOPub?.(msg);
  };
  if (hooks.onStdin) {
    future.onStdin = msg => {
      note(msg);
      hooks.onStdin(msg, future);
    };
  }
  const reply = await future.done;
  check(reply, `no execute_reply for ${JSON.stringify(code)}`);
  return { reply: reply.content, stdout, stderr, iopub };
}

async function main() {
  const { baseUrl, token, framing } = parseArgs(process.argv.slice(2));
  const serverSettings = ServerConnection.makeSettings({
    baseUrl,
    token,
    appendToken: true,
    fetch: tracingFetch,
    Request: globalThis.Request,
    Headers: globalThis.Headers,
    WebSocket: framing === 'v1' ? RecordingWebSocket : NoSubprotocolWebSocket
  });
  const results = { framing };
  const specManager = new KernelSpecManager({ serverSettings, standby: 'never' });
  const kernelManager = new KernelManager({ serverSettings, standby: 'never' });
  let kernel = null;
  let kernelId = null; // until the kernel is shut down
  try {
    // Kernelspecs.
    await step('kernelspecs', async () => {
      await specManager.ready;
      await specManager.refreshSpecs();
    });
    const specs = specManager.specs;
    check(specs && specs.default, `no kernelspecs: ${JSON.stringify(specs)}`);
    results.defaultKernel = specs.default;
    results.kernelspecs = Object.keys(specs.kernelspecs).sort();
    check(specs.default in specs.kernelspecs, `the default ${specs.default} is not listed`);

    // Start a kernel without a name: the server picks its default.
    await step('kernel manager ready', () => kernelManager.ready);
    kernel = await step('start', () => kernelManager.startNew({}));
    // Count the `status: restarting` notices the connection receives: JupyterLab takes
    // each for a restart the server did on its own (it clears its state and
    // reconnects); jupyter_server sends none for a restart asked for over REST.
    results.restartingNotices = 0;
    kernel.anyMessage.connect((_, { msg, direction }) => {
      if (
        direction === 'recv' &&
        msg.header.msg_type === 'status' &&
        msg.content.execution_state === 'restarting'
      ) {
        results.restartingNotices += 1;
      }
    });
    results.kernelName = kernel.name;
    results.kernelId = kernelId = kernel.id;

    // The connection asks for kernel info on its own once the socket is open (and
    // refuses a kernel_info_request before): wait for that, as JupyterLab does.
    const connected = await step('connect', () => kernel.info);
    check(connected.protocol_version, 'no protocol_version in kernel info');
    const info = await step('kernel_info', () => kernel.requestKernelInfo());
    check(info, 'no kernel_info_reply');
    results.kernelInfo = {
      status: info.content.status,
      protocol_version: info.content.protocol_version,
      language: info.content.language_info?.name
    };
    results.connectionStatus = kernel.connectionStatus;
    results.statusAfterInfo = kernel.status;

    // Execute, printing a line; the result and the output come on iopub.
    const first = await step('execute', () =>
      execute(kernel, "print('hello from', 'jupyterlab services')\nx = 41\nx + 1")
    );
    results.execute = {
      status: first.reply.status,
      execution_count: first.reply.execution_count,
      stdout: first.stdout,
      iopub: [...new Set(first.iopub)].sort()
    };

    // Completion and inspection.
    const completeCode = 'import os\nos.pa';
    const complete = await step('complete', () =>
      kernel.requestComplete({ code: completeCode, cursor_pos: completeCode.length })
    );
    results.complete = {
      status: complete.content.status,
      matches: complete.content.matches,
      cursor_start: complete.content.cursor_start,
      cursor_end: complete.content.cursor_end
    };
    const inspect = await step('inspect', () =>
      kernel.requestInspect({ code: 'len', cursor_pos: 3, detail_level: 0 })
    );
    results.inspect = {
      status: inspect.content.status,
      found: inspect.content.found,
      text: String(inspect.content.data?.['text/plain'] ?? '').slice(0, 400)
    };

    // input() answered on the stdin channel.
    const prompts = [];
    const asked = await step('input', () =>
      execute(kernel, "name = input('who are you? ')\nprint('hello,', name)", {
        onStdin: msg => {
          if (msg.header.msg_type === 'input_request') {
            prompts.push(msg.content.prompt);
            kernel.sendInputReply({ status: 'ok', value: 'jlab' }, msg.header);
          }
        }
      })
    );
    results.input = { status: asked.reply.status, prompts, stdout: asked.stdout };

    // Interrupt a running cell once it has started.
    let started;
    const running = new Promise(resolve => {
      started = resolve;
    });
    const sleeper = execute(kernel, "import time\nprint('sleeping', flush=True)\ntime.sleep(30)", {
      onIOPub: msg => {
        if (msg.header.msg_type === 'stream' && msg.content.text.includes('sleeping')) {
          started();
        }
      }
    });
    sleeper.catch(() => {}); // awaited below; do not let it reject unhandled meanwhile
    await step('interrupt: cell running', () => running);
    // Then give the kernel's main thread time to get into time.sleep. The stream goes
    // out as the main thread releases the GIL to sleep; on a loaded machine a SIGINT
    // that lands before the sleep's system call (the thread preempted in between)
    // is handled only once the sleep has run its course: CPython's race, with
    // ipykernel too. A user clicks the interrupt button later than 2 ms anyway.
    await new Promise(resolve => setTimeout(resolve, 500));
    const t0 = Date.now();
    const sleeperRun = lastExecute;
    sleeperRun.trace.push(`+${t0 - sleeperRun.t0}ms POST interrupt`);
    await step('interrupt', () => kernel.interrupt());
    sleeperRun.trace.push(`+${Date.now() - sleeperRun.t0}ms POST interrupt answered`);
    const interrupted = await step('interrupt: reply', () => sleeper, 20_000);
    results.interrupt = {
      status: interrupted.reply.status,
      ename: interrupted.reply.ename,
      ms: Date.now() - t0,
      trace: sleeperRun.trace
    };

    // Restart, then execute again in a fresh namespace.
    await step('restart', () => kernel.restart(), 60_000);
    await step('connect after restart', () => kernel.info);
    const afterInfo = await step('kernel_info after restart', () => kernel.requestKernelInfo());
    const again = await step('execute after restart', () =>
      execute(kernel, "print('x' in globals(), 'after restart')")
    );
    results.restart = {
      kernelInfo: afterInfo?.content.status,
      status: again.reply.status,
      execution_count: again.reply.execution_count,
      stdout: again.stdout,
      connectionStatus: kernel.connectionStatus
    };

    // Shutdown; the server no longer lists it.
    await step('shutdown', () => kernel.shutdown(), 60_000);
    results.shutdown = { disposed: kernel.isDisposed, status: kernel.status };
    const id = kernelId;
    kernelId = null;
    await step('list after shutdown', () => kernelManager.refreshRunning());
    results.runningAfterShutdown = [...kernelManager.running()].map(model => model.id);
    check(!results.runningAfterShutdown.includes(id), `${id} still listed after shutdown`);

    results.subprotocols = sockets.map(ws => ws.protocol);
    results.sockets = sockets.length;
    results.unhandledRejections = unhandledRejections;
    return results;
  } finally {
    if (kernelId !== null) {
      // A failure midway: do not leave the kernel running on the server (the
      // connection may be disposed already, so through the REST API).
      try {
        await step('cleanup shutdown', () => kernelManager.shutdown(kernelId), 20_000);
      } catch (err) {
        process.stderr.write(`cleanup: ${err.message}\n`);
      }
    }
    kernelManager.dispose();
    specManager.dispose();
    for (const ws of sockets) {
      ws.terminate();
    }
  }
}

main().then(
  results => {
    clearTimeout(watchdog);
    process.stdout.write(JSON.stringify(results) + '\n', () => process.exit(0));
  },
  err => fail(String(err?.stack ?? err))
);
