// Every error code the addon can raise becomes its typed class: the codes are read from native/ itself
// (comeba::ErrorCode's names, and the codes the binding sets on its own errors), so a new native code without a
// class here fails this test.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ComebaError, DisposedError, errorClasses, fromNative, InternalError, InvalidRequestError, type ErrorCode } from '../lib/errors.js';

const native = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');

function nativeCodes(): string[] {
  const errorH = readFileSync(join(native, 'common', 'error.h'), 'utf8');
  const named = [...errorH.matchAll(/case ErrorCode::\w+: return "([A-Z_]+)";/g)].map((m) => m[1]);
  const binding = readdirSync(join(native, 'binding')).filter((f) => f.endsWith('.cpp')).map((f) => readFileSync(join(native, 'binding', f), 'utf8')).join('\n');
  // error.Set("code", Napi::String::New(env, "DISPOSED")) and CaughtError{"OUT_OF_MEMORY", …}
  const set = [...binding.matchAll(/String::New\([^,]+,\s*"([A-Z_]+)"\)|CaughtError\{"([A-Z_]+)"/g)].map((m) => m[1] ?? m[2]);
  return [...new Set([...named, ...set])].sort();
}

test('the codes read from native/ include the ones its binding sets itself', (t) => {
  const codes = nativeCodes();
  for (const code of ['INVALID_ARGUMENT', 'DISPOSED', 'OUT_OF_MEMORY', 'INTERNAL', 'ABORTED', 'NUMERICAL_FAILURE']) t.true(codes.includes(code), code);
});

test('every code the addon raises, and every ErrorCode, becomes its own typed class with the message kept', (t) => {
  const codes = [...new Set([...nativeCodes(), ...Object.keys(errorClasses)])];
  for (const code of codes) {
    const raised = Object.assign(new Error(`something about ${code}`), { code });
    const typed = fromNative(raised) as ComebaError;
    t.true(typed instanceof ComebaError, code);
    t.is(typed.code, code as ErrorCode, `${code} became ${typed.name} (${typed.code})`);
    t.is(typed.name === 'InternalError', code === 'INTERNAL', code);
    t.true(typed.message.includes(`something about ${code}`), typed.message);
  }
});

test('DISPOSED keeps the addon\'s words; INVALID_REQUEST keeps the request index; an unknown code is internal', (t) => {
  const disposed = fromNative(Object.assign(new Error('the model has been disposed'), { code: 'DISPOSED' }));
  t.true(disposed instanceof DisposedError);
  t.is(disposed.message, 'the model has been disposed');
  const request = fromNative(Object.assign(new Error('request 3: the target is empty'), { code: 'INVALID_REQUEST' })) as InvalidRequestError;
  t.true(request instanceof InvalidRequestError);
  t.is(request.index, 3);
  t.is(request.message, 'request 3: the target is empty');
  const unknown = fromNative(Object.assign(new Error('odd'), { code: 'NOT_A_CODE' }));
  t.true(unknown instanceof InternalError);
  t.true(fromNative(Object.assign(new Error('x'), { code: 'toString' })) instanceof InternalError);
});
