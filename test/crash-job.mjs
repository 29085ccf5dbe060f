// Preloaded (NODE_OPTIONS=--import) into the `comeba worker` processes of test/queue.test.ts, and so into the
// sandboxed processes BullMQ forks for its jobs: there, the first attempt of the job that COMEBA_TEST_CRASH_JOB
// names dies as a native crash would, as it starts. The library has no such switch.
const crash = process.env.COMEBA_TEST_CRASH_JOB;
if (crash && process.send) {
  // Listen only once BullMQ's child listens: a listener of ours alone would start the IPC channel's flow, and
  // the messages sent before BullMQ's listener is there would be lost to it.
  process.on('newListener', function watch(event) {
    if (event !== 'message') return;
    process.off('newListener', watch);
    setImmediate(() => process.on('message', (message) => {
      // BullMQ's ChildCommand.Start (1) carries the job as JSON.
      if (message?.cmd === 1 && message.job?.id === crash && message.job.attemptsMade === 0) process.kill(process.pid, 'SIGSEGV');
    }));
  });
}
