// The view: a pure function of the state. Editing this file is what a hot swap replaces.
export function greeting(count) {
  return count === 0 ? 'Click the button.' : `Clicked ${count} time${count === 1 ? '' : 's'}.`;
}
