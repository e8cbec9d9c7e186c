// Where the world map draws each player's dot and name, so that players on the same spot all
// stay visible and readable. Newcomers enter a zone at its spawn point, so a crowd there
// is the usual case, not a corner case. Display only: nothing here changes a position.

export const DOT_RADIUS = 7;
const CROWD_PX = 10; // dots whose centres are closer than this are drawn as one crowd
const MAX_RING_PX = 36; // a big crowd may overlap a little rather than cover the map
const LINE_PX = 14; // height of a name, and how far a name moves up to clear another
const MAX_LIFTS = 6; // a name that finds no room within this many lines is left out
const CROWD_NAMES = 5; // a crowd shows this many names at most, the last as "+N more"

// marks: [{key, x, y, label}] in canvas pixels, most important first (the player's own dot),
// in the same order every frame so that crowds do not shuffle.
// Returns {dots: [{key, x, y, dx, dy}], labels: [{text, x, y, width}]}: a dot is drawn at
// (x + dx, y + dy), a label centred on x with its baseline at y.
export function layOut(marks, measure) {
  const crowds = [];
  for (const mark of marks) {
    const crowd = crowds.find((c) => Math.hypot(c.x - mark.x, c.y - mark.y) < CROWD_PX);
    if (crowd) crowd.members.push(mark);
    else crowds.push({ x: mark.x, y: mark.y, members: [mark] });
  }
  const dots = crowds.flatMap(fanOut);
  const labels = placeLabels(crowds, dots, measure);
  return { dots, labels };
}

// A crowd's dots go round a ring just wide enough that neighbours (2·ring·sin(π/n) apart) do
// not touch; the first member on the left, so two players stand side by side.
function fanOut({ x, y, members }) {
  const n = members.length;
  if (n === 1) return [{ key: members[0].key, x, y, dx: 0, dy: 0 }];
  const spacing = DOT_RADIUS * 2 + 2;
  const ring = Math.min(MAX_RING_PX, spacing / (2 * Math.sin(Math.PI / n)));
  return members.map((mark, i) => {
    const angle = Math.PI + (2 * Math.PI * i) / n;
    return { key: mark.key, x, y, dx: ring * Math.cos(angle), dy: ring * Math.sin(angle) };
  });
}

// Each name goes above its dot, or is lifted line by line until it overlaps no name placed
// before it. A crowd's names stack above the whole ring, each centred on the crowd.
function placeLabels(crowds, dots, measure) {
  const dotOf = new Map(dots.map((dot) => [dot.key, dot]));
  const placed = [];
  const place = (text, x, y) => {
    const width = measure(text);
    for (let lift = 0; lift <= MAX_LIFTS; lift += 1) {
      const box = { text, x, y: y - lift * LINE_PX, width };
      if (!placed.some((other) => overlaps(box, other))) {
        placed.push(box);
        return box;
      }
    }
    return null;
  };
  for (const { x, y, members } of crowds) {
    const top = y + Math.min(...members.map((mark) => dotOf.get(mark.key).dy));
    let names = members.map((mark) => mark.label);
    if (names.length > CROWD_NAMES) {
      const rest = names.length - (CROWD_NAMES - 1);
      names = [...names.slice(0, CROWD_NAMES - 1), `+${rest} more`];
    }
    for (const name of names) place(name, x, top - DOT_RADIUS - 5);
  }
  return placed;
}

function overlaps(a, b) {
  const apart = Math.abs(a.x - b.x) * 2 >= a.width + b.width + 4 || Math.abs(a.y - b.y) >= LINE_PX;
  return !apart;
}
