// Runs one MicroPython script inside the 32-bit WebAssembly port.
// Usage: node run.mjs JOB.json
// JOB: {"heapsize": bytes, "mounts": [[hostDir, fsDir], ...], "path": [fsDir, ...],
//       "script": hostPath, "argv": [...]}
// Files of the mounted host folders (.py, .mpy, .json) are copied into the
// port's in-memory filesystem; the script's exception ends the run with code 1.
import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const keep = (name) => /\.(py|mpy|json)$/.test(name);

function mkdirs(FS, dir) {
  let at = "";
  for (const part of dir.split("/").filter(Boolean)) {
    at += "/" + part;
    try { FS.mkdir(at); } catch (e) { /* exists */ }
  }
}

function copyTree(FS, host, dest) {
  mkdirs(FS, dest);
  for (const entry of fs.readdirSync(host)) {
    if (entry === "node_modules" || entry === "__pycache__" || entry.startsWith(".")) continue;
    const src = path.join(host, entry);
    const st = fs.statSync(src);
    if (st.isDirectory()) copyTree(FS, src, dest + "/" + entry);
    else if (keep(entry)) FS.writeFile(dest + "/" + entry, fs.readFileSync(src));
  }
}

let stderrSeen = false;
const mp = await loadMicroPython({
  heapsize: job.heapsize || 1024 * 1024,
  linebuffer: true,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => { stderrSeen = true; process.stderr.write(line + "\n"); },
});
for (const [host, dest] of job.mounts || []) copyTree(mp.FS, host, dest);
const source = fs.readFileSync(job.script, "utf8");
const prelude = [
  "import sys",
  ...(job.path || []).map((p) => `sys.path.insert(0, ${JSON.stringify(p)})`),
  `sys.argv[:] = ${JSON.stringify([job.script, ...(job.argv || [])])}`,
].join("\n");
try {
  mp.runPython(prelude);
  await mp.runPythonAsync(source);
} catch (err) {
  process.stderr.write(String(err && err.message ? err.message : err) + "\n");
  process.exit(1);
}
process.exit(0);
