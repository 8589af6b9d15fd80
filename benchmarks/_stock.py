"""dspy's stock PythonInterpreter (Deno + Pyodide), made to run without deno.land.

runner.js imports `readLines` from https://deno.land/std@0.186.0/io/mod.ts; an import map points
that URL at a local module with the same contract. Pyodide itself comes from the npm registry
through Deno's npm support, cached in DENO_DIR.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

CACHE = Path(os.environ.get("FLEET_BENCH_CACHE", Path.home() / ".cache" / "fleet-rlm-bench"))
STD_IO = "https://deno.land/std@0.186.0/io/mod.ts"
READ_LINES = """\
// Stand-in for std@0.186.0 io/readLines: lines without "\\n" or "\\r\\n", linear in the input.
type Reader = { read(p: Uint8Array): Promise<number | null> };
const decoder = new TextDecoder();

function decode(parts: Uint8Array[]): string {
  let line = parts[0];
  if (parts.length > 1) {
    line = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (line.set(p, at), at + p.length), 0);
  }
  if (line.length && line[line.length - 1] === 13) line = line.subarray(0, -1);
  return decoder.decode(line);
}

export async function* readLines(reader: Reader): AsyncGenerator<string> {
  const buf = new Uint8Array(1 << 20);
  let parts: Uint8Array[] = [];
  for (let n; (n = await reader.read(buf)) !== null;) {
    let chunk = buf.subarray(0, n), i;
    while ((i = chunk.indexOf(10)) >= 0) {
      parts.push(chunk.subarray(0, i));
      const line = decode(parts);
      parts = [];
      chunk = chunk.subarray(i + 1);
      yield line;
    }
    if (chunk.length) parts.push(chunk.slice());  // buf is reused by the next read
  }
  if (parts.length) yield decode(parts);
}
"""


class StockUnavailable(RuntimeError):
    """Why the stock interpreter cannot run here."""


def stock_factory() -> Callable[..., object]:
    """make(**kwargs) -> a new dspy.PythonInterpreter(**kwargs) that runs offline; probed once."""
    try:
        import deno  # noqa: F401 - dspy finds its binary through this package
    except ImportError:
        raise StockUnavailable("the `deno` package is missing: use `uv run --group bench`") \
            from None
    from dspy.primitives.python_interpreter import CodeInterpreterError, PythonInterpreter

    os.environ.setdefault("DENO_DIR", str(CACHE / "deno"))
    os.environ["DENO_NO_PACKAGE_JSON"] = "1"
    CACHE.mkdir(parents=True, exist_ok=True)
    shim, import_map = CACHE / "std_io_read_lines.ts", CACHE / "import_map.json"
    shim.write_text(READ_LINES)
    import_map.write_text(json.dumps({"imports": {STD_IO: shim.as_uri()}}))

    command = PythonInterpreter().deno_command  # dspy's own command line, plus the import map
    command.insert(command.index("run") + 1, f"--import-map={import_map}")

    def make(**kwargs) -> PythonInterpreter:
        return PythonInterpreter(deno_command=command, **kwargs)

    probe = make()
    try:  # the first run downloads Pyodide from npm into DENO_DIR
        probe.execute("x = 1")
    except (CodeInterpreterError, OSError) as exc:
        raise StockUnavailable(f"dspy.PythonInterpreter failed to start: {exc}") from exc
    finally:
        probe.shutdown()
    return make
