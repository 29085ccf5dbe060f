#!/usr/bin/env node
// The `comeba` command: argv → one module per command, each exporting `summary` and `run(argv)`.
// Modules load lazily so `comeba libtorch which` never touches the addon.

import { readFileSync } from 'node:fs';
import { ComebaError, InvalidArgumentError } from '../errors.js';

export interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
}

const commands: Record<string, () => Promise<Command>> = {
  inspect: () => import('./inspect.js'),
  generate: () => import('./generate.js'),
  sweep: () => import('./sweep.js'),
  stats: () => import('./stats.js'),
  queue: () => import('./queue.js'),
  worker: () => import('./worker.js'),
  report: () => import('./report.js'),
  export: () => import('./export.js'),
  libtorch: () => import('./libtorch.js'),
  build: () => import('./build.js'),
};

async function usage(): Promise<string> {
  const lines = await Promise.all(Object.entries(commands).map(async ([name, load]) => `  ${name.padEnd(10)} ${(await load()).summary}`));
  return [
    'usage: comeba <command> [options]   (comeba help <command>, or comeba <command> --help, for its options)', '', ...lines,
    '', '  help       this list, or a command\'s options', '  --version  the installed comeba\'s version',
  ].join('\n');
}

/** package.json's version: the same file from lib/cli/ (tsx) and dist/cli/ (the installed package). */
const version = (): string => (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

async function main(argv: string[]): Promise<number> {
  let [name, ...rest] = argv;
  if (name === '--version' || name === '-v' || name === 'version') {
    console.log(`comeba ${version()}`);
    return 0;
  }
  if (name === 'help' && rest.length > 0) [name, rest] = [rest[0], ['--help']];
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(await usage());
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (!load) {
    console.error(`comeba: unknown command '${name}': run comeba help for the list of commands`);
    return 2;
  }
  try {
    return await (await load()).run(rest);
  } catch (err) {
    return report(name, err);
  }
}

// Typed errors carry a message meant for the user; anything else is a bug and keeps its stack. A bad command
// line (an invalid argument, or what parseArgs refuses) is one line and exit code 2.
function report(command: string, err: unknown): number {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
    // Some of parseArgs' messages span lines.
    console.error(`comeba ${command}: ${(err as Error).message.replace(/\s*\n\s*/g, ' ')} (see comeba ${command} --help)`);
    return 2;
  }
  if (err instanceof InvalidArgumentError) {
    console.error(`comeba ${command}: ${err.message}`);
    return 2;
  }
  console.error(err instanceof ComebaError ? `comeba ${command}: ${err.message}` : err);
  return 1;
}

process.exitCode = await main(process.argv.slice(2));
