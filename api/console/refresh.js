// A view's figures are read again when the server says they moved (the `figures` topic, at
// most once a second), one read at a time: however busy the gateway, the page redraws at
// that pace, never once per request.

export function onFigures(ctx, load) {
  let running = false;
  let again = false;
  let stopped = false;
  async function run() {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await load();
      ctx.problem(null);
    } catch (error) {
      ctx.problem(error);
    } finally {
      running = false;
      if (again && !stopped) {
        again = false;
        run();
      }
    }
  }
  const unsubscribe = ctx.live.subscribe("figures", run);
  run();
  return () => {
    stopped = true;
    unsubscribe();
  };
}
