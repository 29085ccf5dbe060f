// `comeba report DIR`: (re)writes DIR/report.html from a sweep folder, also one made by an older comeba.

import { parseArgs } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import { writeReport } from '../sweep/report.js';

export const summary = 'write a sweep folder\'s report.html (charts, tables, records), viewable offline';

const usage = `usage: comeba report DIR

  DIR   a sweep's --out folder (default ./comeba-sweep); writes DIR/report.html`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' } }, allowPositionals: true });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  if (positionals.length > 1) throw new InvalidArgumentError(`one folder, not ${positionals.length}`);
  console.log(writeReport(positionals[0] ?? 'comeba-sweep'));
  return 0;
}
