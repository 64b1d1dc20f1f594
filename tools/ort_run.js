#!/usr/bin/env node
// Runs an ONNX model with ONNX Runtime (onnxruntime-node) on .npy inputs and
// writes each output as .npy: the reference side of the real-model tests.
//
//   node tools/ort_run.js MODEL --input NAME=FILE.npy [--input ...] --output-dir DIR
//        [--threads N] [--repeat R] [--warmup W] [--warmup-ms M] [--min-time-ms T]
//        [--opt-level disabled|basic|extended|all] [--json] [--profile PREFIX]
//   node tools/ort_run.js MODEL --data DIR [--input NAME=FILE.npy] [--carry OUT=IN] --output-dir DIR
//
// Writes DIR/<output name>.npy for every graph output (characters outside
// [A-Za-z0-9._-] in the name replaced by '_'); the outputs are those of the
// first run. With --repeat R (R >= 1) the model is run W more times first
// (default W = 1; or for at least M ms with --warmup-ms) and then timed until
// R runs and T ms (--min-time-ms, default 0) are done; the timing is printed
// as JSON {"median_ms", "min_ms", "p90_ms", "mean_ms", "repeat", "warmup",
// "samples_ms"}. --json prints one JSON object with the outputs (name, dtype,
// shape, file) and the timing instead of the human-readable lines.
// --data DIR runs every sample of a sample directory in order with one session
// (as `quantkit run --data`: DIR/<input>.npy, or sample folders with <input>.npy,
// or for one input *.npy files) and writes OUT/<sample>/<output>.npy; --input
// values are used for every sample, and --carry OUT=IN feeds output OUT of
// sample i to input IN of sample i+1 (the first sample uses --input IN=FILE).
// Exit 0 on success, 2 on a usage or input error, 1 if ONNX Runtime fails.
//
// --profile PREFIX turns on ONNX Runtime's profiler for the timed runs and prints the time per op
// type (summed over nodes and runs, share of the total) to stderr; the raw trace is PREFIX*.json.
//
// Supported .npy dtypes: float32, float16, float64, int8, uint8, int16, uint16,
// int32, uint32, int64, uint64, bool (little-endian, C order).
'use strict';

const fs = require('fs');
const path = require('path');

class UsageError extends Error {}

// ------------------------------------------------------------------ npy I/O
// numpy descr (without byte order) <-> ORT tensor type, typed array.
const DTYPES = [
  { descr: 'f4', ort: 'float32', array: Float32Array },
  { descr: 'f2', ort: 'float16', array: Uint16Array },
  { descr: 'f8', ort: 'float64', array: Float64Array },
  { descr: 'i1', ort: 'int8', array: Int8Array },
  { descr: 'u1', ort: 'uint8', array: Uint8Array },
  { descr: 'i2', ort: 'int16', array: Int16Array },
  { descr: 'u2', ort: 'uint16', array: Uint16Array },
  { descr: 'i4', ort: 'int32', array: Int32Array },
  { descr: 'u4', ort: 'uint32', array: Uint32Array },
  { descr: 'i8', ort: 'int64', array: BigInt64Array },
  { descr: 'u8', ort: 'uint64', array: BigUint64Array },
  { descr: 'b1', ort: 'bool', array: Uint8Array },
];
const BY_DESCR = new Map(DTYPES.map((d) => [d.descr, d]));
const BY_ORT = new Map(DTYPES.map((d) => [d.ort, d]));

function parseHeaderDict(text, file) {
  // The header is a Python dict literal such as
  // {'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 48, 320), }
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text);
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) {
    throw new UsageError(`${file}: malformed .npy header ${JSON.stringify(text.trim())}`);
  }
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length > 0).map((s) => {
    if (!/^\d+L?$/.test(s)) throw new UsageError(`${file}: bad shape entry '${s}' in .npy header`);
    return Number.parseInt(s, 10);
  });
  return { descr: descr[1], fortran: fortran[1] === 'True', dims };
}

function readNpy(file) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`cannot read '${file}': ${e.code || e.message}`);
  }
  const magic = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
  if (buf.length < 10 || !buf.subarray(0, 6).equals(magic)) {
    throw new UsageError(`${file}: not a .npy file (bad magic)`);
  }
  const major = buf[6];
  let headerLen;
  let offset;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    offset = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new UsageError(`${file}: truncated .npy header`);
    headerLen = buf.readUInt32LE(8);
    offset = 12;
  } else {
    throw new UsageError(`${file}: unsupported .npy version ${major}.${buf[7]}`);
  }
  if (offset + headerLen > buf.length) throw new UsageError(`${file}: truncated .npy header`);
  const header = parseHeaderDict(buf.toString(major === 3 ? 'utf8' : 'latin1', offset, offset + headerLen), file);
  if (header.fortran) throw new UsageError(`${file}: Fortran-order .npy arrays are not supported`);
  let d = header.descr;
  const order = d[0];
  if (order === '>' && !d.endsWith('1')) {
    throw new UsageError(`${file}: big-endian dtype '${d}' is not supported`);
  }
  if ('<>|='.includes(order)) d = d.slice(1);
  if (d === '?') d = 'b1';
  const dt = BY_DESCR.get(d);
  if (!dt) throw new UsageError(`${file}: unsupported dtype '${header.descr}'`);
  const count = header.dims.reduce((a, b) => a * b, 1);
  const dataOffset = offset + headerLen;
  const nbytes = count * dt.array.BYTES_PER_ELEMENT;
  if (buf.length - dataOffset !== nbytes) {
    throw new UsageError(`${file}: expected ${nbytes} data bytes for shape [${header.dims}] ${d}, found ${buf.length - dataOffset}`);
  }
  // Copy into a fresh, aligned buffer.
  const ab = new ArrayBuffer(nbytes);
  new Uint8Array(ab).set(buf.subarray(dataOffset, dataOffset + nbytes));
  return { dtype: dt, dims: header.dims, data: new dt.array(ab) };
}

function npyBytes(descr, dims, data) {
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  let prefix = 10;
  let major = 1;
  if (dict.length + 1 + prefix > 65535) {
    major = 2;
    prefix = 12;
  }
  const total = Math.ceil((prefix + dict.length + 1) / 64) * 64;
  dict = dict.padEnd(total - prefix - 1, ' ') + '\n';
  const head = Buffer.alloc(prefix);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]).copy(head, 0);
  if (major === 1) head.writeUInt16LE(dict.length, 8);
  else head.writeUInt32LE(dict.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat([head, Buffer.from(dict, 'latin1'), body]);
}

// Same rule as `quantkit run` (src/cli/main.cc SafeFileName).
function sanitizeName(name) {
  const out = (name === '' ? 'unnamed' : name).replace(/[^A-Za-z0-9._-]/g, '_');
  return out === '.' || out === '..' ? '_' : out;
}

// ----------------------------------------------------------------- arguments
function parseArgs(argv) {
  const opts = {
    inputs: [], carries: [], threads: 0, repeat: 0, warmup: null, warmupMs: null, minTimeMs: 0,
    json: false, optLevel: 'all',
  };
  const intArg = (flag, v, min) => {
    if (v === undefined || !/^\d+$/.test(v) || Number(v) < min) {
      throw new UsageError(`${flag} needs an integer >= ${min}`);
    }
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    if (eq > 0) {
      v = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    const val = () => (v !== undefined ? v : argv[++i]);
    switch (a) {
      case '--input': {
        const s = val();
        const k = s === undefined ? -1 : s.indexOf('=');
        if (k <= 0) throw new UsageError('--input needs NAME=FILE.npy');
        opts.inputs.push({ name: s.slice(0, k), file: s.slice(k + 1) });
        break;
      }
      case '--carry': {
        const s = val();
        const k = s === undefined ? -1 : s.indexOf('=');
        if (k <= 0 || k + 1 === s.length) throw new UsageError('--carry needs OUTPUT=INPUT');
        opts.carries.push({ output: s.slice(0, k), input: s.slice(k + 1) });
        break;
      }
      case '--data': opts.data = val(); break;
      case '--warmup-ms': opts.warmupMs = intArg(a, val(), 0); break;
      case '--min-time-ms': opts.minTimeMs = intArg(a, val(), 0); break;
      case '--output-dir': opts.outputDir = val(); break;
      case '--threads': opts.threads = intArg(a, val(), 0); break;
      case '--repeat': opts.repeat = intArg(a, val(), 1); break;
      case '--warmup': opts.warmup = intArg(a, val(), 0); break;
      case '--opt-level': {
        opts.optLevel = val();
        if (!['disabled', 'basic', 'extended', 'all'].includes(opts.optLevel)) {
          throw new UsageError('--opt-level must be disabled, basic, extended or all');
        }
        break;
      }
      case '--json': opts.json = true; break;
      case '--profile': {
        opts.profile = val();
        if (!opts.profile) throw new UsageError('--profile needs a file name prefix');
        break;
      }
      case '-h': case '--help': opts.help = true; break;
      default:
        if (a.startsWith('-')) throw new UsageError(`unknown option '${a}'`);
        if (opts.model) throw new UsageError(`unexpected argument '${a}'`);
        opts.model = a;
    }
  }
  if (opts.help) return opts;
  if (!opts.model) throw new UsageError('missing MODEL');
  if (!opts.outputDir && !opts.repeat) throw new UsageError('missing --output-dir DIR');
  if (opts.carries.length && !opts.data) throw new UsageError('--carry needs --data');
  if (opts.data && (opts.repeat || !opts.outputDir)) throw new UsageError('--data needs --output-dir and no --repeat');
  if (opts.profile && !opts.repeat) throw new UsageError('--profile profiles the timed runs: it needs --repeat');
  if (opts.warmup === null) opts.warmup = opts.repeat && opts.warmupMs === null ? 1 : 0;
  return opts;
}

function percentile(sorted, p) {
  // Nearest-rank on the sorted samples.
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[k];
}

// ----------------------------------------------------------- sample folders
// The samples of a directory, as src/quant/dataset.cc finds them (without .pb
// files): [{name, files: {input: file}}] in sorted path order.
function listSamples(dir, inputNames) {
  const isFile = (f) => fs.existsSync(f) && fs.statSync(f).isFile();
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new UsageError(`data directory '${dir}' does not exist`);
  }
  const named = (d) => {
    const files = {};
    for (const n of inputNames) {
      const f = path.join(d, `${sanitizeName(n)}.npy`);
      if (!isFile(f)) return null;
      files[n] = f;
    }
    return files;
  };
  const want = inputNames.map((n) => `${sanitizeName(n)}.npy`).join(', ');
  const top = named(dir);
  if (top) return [{ name: path.basename(path.resolve(dir)), files: top }];
  const entries = fs.readdirSync(dir, { withFileTypes: true }).map((e) => e.name).sort(
    (x, y) => (Buffer.compare(Buffer.from(x), Buffer.from(y))));
  const samples = [];
  for (const e of entries) {
    const p = path.join(dir, e);
    if (!fs.statSync(p).isDirectory()) continue;
    const files = named(p);
    if (!files) throw new UsageError(`sample folder '${p}' has no ${want}`);
    samples.push({ name: e, files });
  }
  if (!samples.length && inputNames.length === 1) {
    for (const e of entries) {
      if (e.endsWith('.npy') && isFile(path.join(dir, e))) {
        samples.push({ name: e.slice(0, -4), files: { [inputNames[0]]: path.join(dir, e) } });
      }
    }
  }
  if (!samples.length) throw new UsageError(`data directory '${dir}' holds no samples (expected ${want} or sample sub-folders)`);
  return samples;
}

function toOrtTensor(ort, t) {
  return new ort.Tensor(t.dtype.ort, t.data, t.dims);
}

function writeOutputs(session, results, outputDir) {
  const outputs = [];
  fs.mkdirSync(outputDir, { recursive: true });
  for (const name of session.outputNames) {
    const t = results[name];
    if (!t || t.location !== undefined && t.location !== 'cpu') {
      throw new Error(`output '${name}' is not a CPU tensor`);
    }
    const dt = BY_ORT.get(t.type);
    if (!dt) throw new Error(`output '${name}' has unsupported type '${t.type}'`);
    const descr = (dt.descr.endsWith('1') ? '|' : '<') + dt.descr;
    const file = path.join(outputDir, `${sanitizeName(name)}.npy`);
    fs.writeFileSync(file, npyBytes(descr, t.dims, t.data));
    outputs.push({ name, dtype: t.type, shape: Array.from(t.dims), file });
  }
  return outputs;
}

// Runs every sample in order; --input feeds are fixed, carried ones only for the first sample.
async function runSamples(ort, session, opts, feeds) {
  for (const c of opts.carries) {
    if (!session.outputNames.includes(c.output)) throw new UsageError(`--carry: the model has no output '${c.output}'`);
    if (!session.inputNames.includes(c.input)) throw new UsageError(`--carry: the model has no input '${c.input}'`);
    if (!(c.input in feeds)) throw new UsageError(`--carry: give the first value of '${c.input}' with --input ${c.input}=FILE.npy`);
  }
  const fromSamples = session.inputNames.filter((n) => !(n in feeds));
  if (!fromSamples.length) throw new UsageError('--data: every model input is given with --input');
  const samples = listSamples(opts.data, fromSamples);
  let runMs = 0;
  for (const s of samples) {
    for (const n of fromSamples) feeds[n] = toOrtTensor(ort, readNpy(s.files[n]));
    const t0 = process.hrtime.bigint();
    const results = await session.run(feeds);
    runMs += Number(process.hrtime.bigint() - t0) / 1e6;
    writeOutputs(session, results, path.join(opts.outputDir, sanitizeName(s.name)));
    for (const c of opts.carries) feeds[c.input] = results[c.output];
  }
  const summary = { model: opts.model, samples: samples.length, run_ms: Math.round(runMs * 1000) / 1000 };
  if (opts.json) console.log(JSON.stringify(summary));
  else console.log(`ran ${samples.length} samples in ${summary.run_ms} ms; outputs in ${opts.outputDir}/<sample>/<output>.npy`);
  return 0;
}

// ------------------------------------------------------------------- profile
// Sums the trace's node events ("<node>_kernel_time") by op type and prints them, largest first.
function printProfile(file) {
  const events = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byOp = new Map();
  let total = 0;
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || !e.args) continue;
    const op = e.args.op_name || '?';
    const entry = byOp.get(op) || { us: 0, calls: 0 };
    entry.us += e.dur;
    entry.calls += 1;
    byOp.set(op, entry);
    total += e.dur;
  }
  console.error(`profile: ${file}`);
  for (const [op, { us, calls }] of [...byOp.entries()].sort((a, b) => b[1].us - a[1].us)) {
    console.error(`  ${op.padEnd(24)} ${(us / 1000).toFixed(2).padStart(10)} ms ${(100 * us / total).toFixed(1).padStart(6)}%  ${calls} calls`);
  }
}

// ---------------------------------------------------------------------- main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.help) {
    const src = fs.readFileSync(__filename, 'utf8').split('\n');
    const end = src.findIndex((l, i) => i > 0 && !l.startsWith('//'));
    console.log(src.slice(1, end).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
    return 0;
  }
  if (!fs.existsSync(opts.model)) throw new UsageError(`model '${opts.model}' not found`);

  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    throw new Error(`cannot load onnxruntime-node (run scripts/setup.sh --no-build): ${e.message}`);
  }

  const sessionOptions = {
    graphOptimizationLevel: opts.optLevel,
    executionMode: 'sequential',
    interOpNumThreads: 1,
    logSeverityLevel: 3,
  };
  if (opts.threads > 0) sessionOptions.intraOpNumThreads = opts.threads;
  if (opts.profile) {
    sessionOptions.enableProfiling = true;
    sessionOptions.profileFilePrefix = opts.profile;
  }
  const session = await ort.InferenceSession.create(opts.model, sessionOptions);

  const feeds = {};
  const seen = new Set();
  for (const { name, file } of opts.inputs) {
    if (seen.has(name)) throw new UsageError(`input '${name}' given twice`);
    seen.add(name);
    if (!session.inputNames.includes(name)) {
      throw new UsageError(`model has no input '${name}' (inputs: ${session.inputNames.join(', ')})`);
    }
    feeds[name] = toOrtTensor(ort, readNpy(file));
  }
  if (opts.data) return runSamples(ort, session, opts, feeds);
  const missing = session.inputNames.filter((n) => !seen.has(n));
  if (missing.length) throw new UsageError(`missing --input for ${missing.join(', ')}`);

  const results = await session.run(feeds);

  const outputs = opts.outputDir ? writeOutputs(session, results, opts.outputDir)
    : session.outputNames.map((name) => ({ name, dtype: results[name].type, shape: Array.from(results[name].dims) }));

  let timing = null;
  if (opts.repeat) {
    const elapsedMs = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
    let warmupRuns = 0;
    const tWarm = process.hrtime.bigint();
    while (warmupRuns < opts.warmup || (opts.warmupMs !== null && (warmupRuns === 0 || elapsedMs(tWarm) < opts.warmupMs))) {
      await session.run(feeds);
      warmupRuns++;
    }
    opts.warmup = warmupRuns;
    const ms = [];
    const tTimed = process.hrtime.bigint();
    while (ms.length < opts.repeat || elapsedMs(tTimed) < opts.minTimeMs) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      ms.push(elapsedMs(t0));
    }
    const sorted = ms.slice().sort((a, b) => a - b);
    const round = (x) => Math.round(x * 1000) / 1000;
    timing = {
      median_ms: round(sorted.length % 2 ? sorted[(sorted.length - 1) / 2]
        : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2),
      min_ms: round(sorted[0]),
      p90_ms: round(percentile(sorted, 90)),
      mean_ms: round(ms.reduce((a, b) => a + b, 0) / ms.length),
      repeat: ms.length,
      warmup: opts.warmup,
      threads: opts.threads,
      samples_ms: ms.map(round),
    };
  }

  if (opts.profile) {
    // onnxruntime-node's endProfiling() returns nothing: the trace is the newest PREFIX*.json.
    await session.endProfiling();
    const dir = path.dirname(path.resolve(opts.profile)), base = path.basename(opts.profile);
    const traces = fs.readdirSync(dir).filter((f) => f.startsWith(base) && f.endsWith('.json'))
      .map((f) => path.join(dir, f)).sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
    if (!traces.length) throw new Error(`no profile written for prefix '${opts.profile}'`);
    printProfile(traces[0]);
  }

  if (opts.json) {
    console.log(JSON.stringify({ model: opts.model, outputs, ...(timing ? { timing } : {}) }));
  } else {
    for (const o of outputs) {
      console.log(`${o.name}: ${o.dtype} [${o.shape.join(', ')}]${o.file ? ` -> ${o.file}` : ''}`);
    }
    if (timing) console.log(JSON.stringify(timing));
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    const msg = String(e && e.message ? e.message : e).split('\n')[0];
    console.error(`ort_run: ${msg}`);
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
