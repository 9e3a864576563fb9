// Small SVG charts. Sizes live in the viewBox so a chart scales with its
// box (no layout shift); colours come from the stylesheet; each chart has a
// text description for screen readers.
import { h, s } from "./dom";

const W = 320;
const H = 160;
const PAD = 28;

export function barChart(title: string, entries: [string, number][]): HTMLElement {
  const max = Math.max(1, ...entries.map((e) => e[1]));
  const bw = (W - PAD) / Math.max(1, entries.length);
  const desc = entries.map(([k, v]) => `${k}: ${v}`).join(", ");
  return h("figure", { class: "chart" },
    s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}. ${desc}` },
      entries.map(([k, v], i) => {
        const bh = ((H - PAD) * v) / max;
        const x = PAD / 2 + i * bw;
        return s("g", null,
          s("rect", { class: "bar", x: x + 2, y: H - PAD - bh, width: Math.max(1, bw - 4), height: bh }),
          s("text", { class: "tick", x: x + bw / 2, y: H - PAD + 14, "text-anchor": "middle" }, clip(k, Math.max(3, Math.floor(bw / 7)))),
          s("text", { class: "val", x: x + bw / 2, y: H - PAD - bh - 4, "text-anchor": "middle" }, v));
      })),
    h("figcaption", null, title));
}

// histogram draws precomputed buckets: [upper bound label, count].
export function histogram(title: string, buckets: [string, number][]): HTMLElement {
  return barChart(title, buckets);
}

export function lineChart(title: string, points: [number, number][], xLabel: string, yLabel: string): HTMLElement {
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs, x0 + 1);
  const y0 = Math.min(...ys, 0);
  const y1 = Math.max(...ys, y0 + 1e-9);
  const px = (x: number) => PAD + ((W - PAD - 8) * (x - x0)) / (x1 - x0);
  const py = (y: number) => H - PAD - ((H - PAD - 8) * (y - y0)) / (y1 - y0);
  const path = points.map((p, i) => `${i ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join("");
  const last = points[points.length - 1];
  return h("figure", { class: "chart" },
    s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${points.length} points from ${fmt(ys[0])} to ${fmt(last[1])}` },
      s("line", { class: "axis", x1: PAD, y1: H - PAD, x2: W - 8, y2: H - PAD }),
      s("line", { class: "axis", x1: PAD, y1: 8, x2: PAD, y2: H - PAD }),
      s("text", { class: "tick", x: PAD - 4, y: 14, "text-anchor": "end" }, fmt(y1)),
      s("text", { class: "tick", x: PAD - 4, y: H - PAD, "text-anchor": "end" }, fmt(y0)),
      s("text", { class: "tick", x: W - 8, y: H - 8, "text-anchor": "end" }, `${xLabel} ${x1}`),
      s("text", { class: "tick", x: PAD, y: H - 8 }, `${x0}`),
      s("path", { class: "line", d: path }),
      points.map((p) => s("circle", { class: "dot", cx: px(p[0]), cy: py(p[1]), r: 2 }))),
    h("figcaption", null, `${title} (${yLabel} by ${xLabel})`));
}

function fmt(n: number): string {
  return Math.abs(n) >= 100 ? n.toFixed(0) : n.toPrecision(3);
}

function clip(t: string, n: number): string {
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
}
