// Accessibility assertions the browser test runs on every screen, in both
// themes: what an axe-style checker would flag first. Returns a list of
// problems (empty when the screen passes).
(() => {
  const problems = [];
  const visible = (el) => {
    if (el.closest("[hidden], dialog:not([open])")) return false;
    const r = el.getBoundingClientRect();
    const cs = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && cs.visibility !== "hidden" && cs.display !== "none";
  };
  const name = (el) => (el.getAttribute("aria-label") || el.getAttribute("title") || el.textContent || el.getAttribute("alt") || "").trim();
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "");

  if (!document.documentElement.lang) problems.push("html has no lang");
  if (!document.title.trim()) problems.push("page has no title");
  if (document.querySelectorAll("main").length !== 1) problems.push("want exactly one main landmark");
  const h1s = [...document.querySelectorAll("h1")].filter(visible);
  if (h1s.length !== 1) problems.push(`want one visible h1, got ${h1s.length}`);
  let last = 0;
  for (const hd of [...document.querySelectorAll("main h1, main h2, main h3, main h4")].filter(visible)) {
    const lvl = Number(hd.tagName[1]);
    if (last && lvl > last + 1) problems.push(`heading level skips from h${last} to h${lvl}: ${hd.textContent}`);
    last = lvl;
  }
  const ids = new Map();
  for (const el of document.querySelectorAll("[id]")) ids.set(el.id, (ids.get(el.id) || 0) + 1);
  for (const [id, n] of ids) if (n > 1) problems.push(`duplicate id ${id}`);
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden" || !visible(el)) continue;
    const labelled = (el.labels && el.labels.length) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!labelled) problems.push(`control without label: ${describe(el)}`);
  }
  for (const el of document.querySelectorAll("button, a[href]")) {
    if (visible(el) && !name(el)) problems.push(`control without a name: ${describe(el)}`);
  }
  for (const el of document.querySelectorAll("[aria-describedby]")) {
    for (const id of el.getAttribute("aria-describedby").split(/\s+/)) {
      if (id && !document.getElementById(id)) problems.push(`aria-describedby points at missing #${id}`);
    }
  }
  for (const el of document.querySelectorAll("svg[role=img], img")) {
    if (visible(el) && !name(el)) problems.push(`image without text alternative: ${describe(el)}`);
  }
  if (!document.querySelector("[aria-live]")) problems.push("no aria-live region");

  // WCAG AA contrast of visible text against its effective background.
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const lum = ({ r, g, b }) => {
    const f = (v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.9) return c;
    }
    return parse(getComputedStyle(document.body).backgroundColor) || { r: 255, g: 255, b: 255, a: 1 };
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || seen.has(el) || !n.textContent.trim() || !visible(el)) continue;
    seen.add(el);
    if (el.closest("button:disabled, .sr-only, svg, option")) continue; // inactive controls are exempt
    const cs = getComputedStyle(el);
    const fg = parse(cs.color);
    if (!fg) continue;
    const bg = background(el);
    const l1 = lum(fg), l2 = lum(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(cs.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(cs.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) problems.push(`contrast ${ratio.toFixed(2)} < ${large ? 3 : 4.5}: ${describe(el)} "${n.textContent.trim().slice(0, 30)}"`);
  }
  return problems;
})()
