// Branch history as an SVG graph: a lane per branch, a dot per commit (snapshot), a line to
// each commit's parent, the clones on a commit beside it. Pure layout plus drawing.

const SVG = "http://www.w3.org/2000/svg";
const LANE = 28;
const ROW = 34;
const PAD = 18;

function el(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// The commit's time as written in its ID (…@snapshot_YYYYMMDDHHMMSS or …@YYYYMMDDHHMMSS).
const stampOf = (id) => (/(\d{14})$/.exec(id) || [, "0"])[1];

// commits: Map id -> {id, parent, message, dataStateAt, clones:[]}; branches: [{name, head, log:[ids]}]
// Returns rows top (newest) to bottom with lane numbers, and the lanes' branch names.
export function layout(commits, branches) {
  const lane = new Map();
  branches.forEach((branch, index) => {
    for (const id of branch.log) if (!lane.has(id)) lane.set(id, index);
  });
  // Depth from the root, so that every parent sits below its children whatever the clocks say.
  const depth = new Map();
  const depthOf = (id, seen = new Set()) => {
    if (depth.has(id)) return depth.get(id);
    const parent = commits.get(id)?.parent;
    const value = parent && commits.has(parent) && !seen.has(parent) ? depthOf(parent, seen.add(id)) + 1 : 0;
    depth.set(id, value);
    return value;
  };
  const rows = [...commits.keys()]
    .map((id) => ({ id, lane: lane.get(id) ?? 0, depth: depthOf(id), stamp: stampOf(id) }))
    .sort((a, b) => b.depth - a.depth || b.stamp.localeCompare(a.stamp) || a.lane - b.lane);
  return rows;
}

const COLORS = ["#2f6fde", "#1a9b6b", "#c2410c", "#9333ea", "#be185d", "#0e7490", "#a16207"];

export function draw(commits, branches, { selected, onSelect }) {
  const rows = layout(commits, branches);
  const at = new Map(rows.map((row, index) => [row.id, { x: PAD + row.lane * LANE, y: PAD + index * ROW, lane: row.lane }]));
  const lanes = Math.max(1, branches.length);
  const width = PAD * 2 + lanes * LANE + 420;
  const height = PAD * 2 + Math.max(1, rows.length) * ROW;
  const heads = new Map(branches.map((b) => [b.head, []]));
  for (const branch of branches) heads.get(branch.head)?.push(branch.name);
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "graph", role: "group", "aria-label": "Branch history: newest commits at the top" });
  for (const row of rows) {
    const parent = commits.get(row.id).parent;
    if (!parent || !at.has(parent)) continue;
    const a = at.get(row.id);
    const b = at.get(parent);
    const d = a.x === b.x ? `M${a.x},${a.y} L${b.x},${b.y}` : `M${a.x},${a.y} C${a.x},${a.y + ROW * 0.8} ${b.x},${b.y - ROW * 0.8} ${b.x},${b.y}`;
    svg.append(el("path", { d, class: "edge", stroke: COLORS[a.lane % COLORS.length] }));
  }
  for (const row of rows) {
    const commit = commits.get(row.id);
    const { x, y, lane } = at.get(row.id);
    const names = heads.get(row.id) || [];
    const clones = commit.clones || [];
    const label = `${row.id}${commit.message ? `: ${commit.message}` : ""}${names.length ? `, head of ${names.join(", ")}` : ""}${clones.length ? `, ${clones.length} clone${clones.length > 1 ? "s" : ""}` : ""}`;
    const textX = PAD + lanes * LANE + 6;
    const select = () => onSelect(row.id);
    const node = el("g", { class: `node${selected === row.id ? " selected" : ""}`, tabindex: 0, role: "button", "aria-label": label, "aria-pressed": selected === row.id ? "true" : "false", "data-id": row.id,
      onclick: select,
      onkeydown: (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          select();
        }
      } },
    el("title", {}, document.createTextNode(label)),
    el("rect", { x: 0, y: y - ROW / 2, width, height: ROW, class: "hit" }),
    el("circle", { cx: x, cy: y, r: names.length ? 7 : 5, fill: COLORS[lane % COLORS.length] }),
    el("text", { x: textX, y: y + 4 }, document.createTextNode(`${names.length ? `[${names.join(", ")}] ` : ""}${commit.message || row.id.split("@").pop()}${clones.length ? `  · clones: ${clones.join(", ")}` : ""}`)));
    svg.append(node);
  }
  return svg;
}
