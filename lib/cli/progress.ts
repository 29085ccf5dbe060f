// One progress line for a long download: rewritten in place on a terminal, a plain line every 15 s
// otherwise (npm's install log, CI), so a log shows it is moving without thousands of lines.

import { formatBytes } from '../io/files.js';

export interface ProgressLine {
  update(bytes: number): void;
  /** Prints a line of its own, below the progress line. */
  log(line: string): void;
  end(): void;
}

export function progressLine(label: string, out: NodeJS.WriteStream = process.stdout): ProgressLine {
  let open = false;
  let lastPlain = Date.now();
  const close = () => {
    if (open) out.write('\n');
    open = false;
  };
  return {
    update(bytes) {
      if (out.isTTY) {
        out.write(`\r${label}: ${formatBytes(bytes)} received`);
        open = true;
      } else if (Date.now() - lastPlain >= 15_000) {
        out.write(`${label}: ${formatBytes(bytes)} received\n`);
        lastPlain = Date.now();
      }
    },
    log(line) {
      close();
      out.write(`${line}\n`);
    },
    end: close,
  };
}
