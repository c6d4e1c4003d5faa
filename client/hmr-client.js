// hmr-proxy browser client (placeholder until the full client lands): one EventSource on the
// proxy's change stream, a full reload on every change batch.
const changesPath = new URL(import.meta.url).searchParams.get('changes') || '/changes';

if (!window.__hmrProxy) {
  window.__hmrProxy = true;
  const source = new EventSource(changesPath);
  source.addEventListener('change', () => location.reload());
}
