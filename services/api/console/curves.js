// ROC and DET curves of a model's held-out operating points, drawn as inline SVG: what
// `twinstream eval` plots (pipeline/evaluation/report.py), with the same axes.
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 300;
const HEIGHT = 260;
const PAD = { left: 46, right: 12, top: 22, bottom: 36 };
// Rates of exactly 0 or 1 have no log or normal deviate: clipped here, as report.py does.
const FLOOR = 1e-4;
const DET_TICKS = [0.001, 0.01, 0.05, 0.2, 0.5];
const DET_MAX = 0.6;

// The standard normal's inverse CDF (Acklam's rational approximation, |error| < 1.2e-9).
const A = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
const B = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
const C = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
const D = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];

export function probit(p) {
  const tail = (q) =>
    (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) /
    ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1);
  if (p < 0.02425) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - 0.02425) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q) /
    (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1)
  );
}

const clip = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

function element(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// One chart: `points` in data units, `x`/`y` the data ranges and their labelled ticks.
function chart({ title, label, points, x, y, diagonal = false }) {
  const sx = (v) => PAD.left + ((v - x.min) / (x.max - x.min)) * (WIDTH - PAD.left - PAD.right);
  const sy = (v) => HEIGHT - PAD.bottom - ((v - y.min) / (y.max - y.min)) * (HEIGHT - PAD.top - PAD.bottom);
  const svg = element("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, width: WIDTH, height: HEIGHT, role: "img", "aria-label": label, class: "curve" });
  svg.append(element("text", { x: WIDTH / 2, y: 14, "text-anchor": "middle", class: "title" }, title));
  svg.append(element("rect", { x: PAD.left, y: PAD.top, width: WIDTH - PAD.left - PAD.right, height: HEIGHT - PAD.top - PAD.bottom, class: "frame" }));
  for (const [value, text] of x.ticks) {
    svg.append(element("line", { x1: sx(value), x2: sx(value), y1: PAD.top, y2: HEIGHT - PAD.bottom, class: "grid" }));
    svg.append(element("text", { x: sx(value), y: HEIGHT - PAD.bottom + 14, "text-anchor": "middle" }, text));
  }
  for (const [value, text] of y.ticks) {
    svg.append(element("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: sy(value), y2: sy(value), class: "grid" }));
    svg.append(element("text", { x: PAD.left - 4, y: sy(value) + 4, "text-anchor": "end" }, text));
  }
  svg.append(element("text", { x: WIDTH / 2, y: HEIGHT - 4, "text-anchor": "middle" }, x.name));
  svg.append(element("text", { x: 12, y: HEIGHT / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${HEIGHT / 2})` }, y.name));
  if (diagonal) {
    // FAR = FRR: the curve crosses it at the EER.
    const lo = Math.max(x.min, y.min);
    const hi = Math.min(x.max, y.max);
    svg.append(element("line", { x1: sx(lo), y1: sy(lo), x2: sx(hi), y2: sy(hi), class: "diagonal" }));
  }
  const inside = points.map(([px, py]) => [clip(px, x.min, x.max), clip(py, y.min, y.max)]);
  const d = inside.map(([px, py], i) => `${i ? "L" : "M"}${sx(px).toFixed(1)},${sy(py).toFixed(1)}`).join("");
  svg.append(element("path", { d, class: "line" }));
  return svg;
}

// Both charts for a recorded curve ({far: [...], frr: [...]}, FAR rising).
export function drawCurves(curve, eer) {
  const about = typeof eer === "number" ? ` (held-out EER ${(100 * eer).toFixed(1)} %)` : "";
  const roc = chart({
    title: "ROC",
    label: `ROC: true-accept rate against false-accept rate on a log axis${about}`,
    points: curve.far.map((far, i) => [Math.log10(Math.max(far, FLOOR)), 1 - curve.frr[i]]),
    x: { name: "FAR", min: Math.log10(FLOOR), max: 0, ticks: [-4, -3, -2, -1, 0].map((e) => [e, `${10 ** e}`]) },
    y: { name: "TAR", min: 0, max: 1, ticks: [0, 0.25, 0.5, 0.75, 1].map((t) => [t, `${t}`]) },
  });
  const deviate = (v) => probit(clip(v, FLOOR, 1 - FLOOR));
  const axis = (name) => ({ name, min: probit(FLOOR), max: probit(DET_MAX), ticks: DET_TICKS.map((t) => [probit(t), `${t}`]) });
  const det = chart({
    title: "DET",
    label: `DET: false-reject rate against false-accept rate on normal-deviate axes${about}`,
    points: curve.far.map((far, i) => [deviate(far), deviate(curve.frr[i])]),
    x: axis("FAR"),
    y: axis("FRR"),
    diagonal: true,
  });
  return [roc, det];
}
