// The app: owns the state, renders with the view module.
import { greeting } from './view.js';

let count = 0;
const button = document.getElementById('count');
const text = document.getElementById('greeting');

function render() {
  button.textContent = String(count);
  text.textContent = greeting(count);
}

button.addEventListener('click', () => { count += 1; render(); });
render();
