// The model: how the counter steps. Change 1 to 10 and the next click steps by 10.
export function step(count) {
  return count + 1;
}
