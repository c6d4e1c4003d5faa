// The app: it owns the state and the DOM, and keeps the swappable code in one container.
// Only this file imports the client; view.js and model.js know nothing about hot swapping.
import { container } from '/__hmr/client.js';

const state = { count: 0, updates: 0 };
let c; // the container: { view, model }, filled and refreshed by hmr-proxy

function render() {
  document.getElementById('count').value = String(state.count);
  document.getElementById('view').textContent = c.view.describe(state);
}

document.getElementById('step').addEventListener('click', () => {
  state.count = c.model.step(state.count);
  render();
});

// Called once at start and after every save of view.js or model.js (once per batch).
container({ '/js/view.js': 'view', '/js/model.js': 'model' }, (fresh) => {
  c = fresh;
  state.updates += 1;
  render();
});

// For poking at from the console (and for the browser tests).
window.app = state;
