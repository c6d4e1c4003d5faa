// The view: turns state into text. Save a change here and the page redraws, keeping the count.
export function describe(state) {
  return `Count: ${state.count}. Updates so far: ${state.updates}.`;
}
