// The chart: uPlot (vendor/uplot) on one canvas, lines over a shared time axis, a read-out of the
// point under the cursor, and a click that picks a valid_time.

/* global uPlot */

const FAINT = "rgba(31, 119, 180, 0.35)";
export const STYLES = {
  latest: { stroke: "#c0392b", width: 2 },
  day_ahead: { stroke: "#8e44ad", width: 2 },
  revision: { stroke: FAINT, width: 1, points: { show: false } },
  reference: { stroke: "#7f8c8d", width: 1, dash: [4, 4], points: { show: false } },
};

let current = null;

/** uPlot's axis templates with 24-hour times and year-month-day dates. */
function iso(template) {
  return template
    .replace("{h}:{mm}:{ss}{aa}", "{HH}:{mm}:{ss}")
    .replace("{h}:{mm}{aa}", "{HH}:{mm}")
    .replace("{h}{aa}", "{HH}:00")
    .replace("{M}/{D}/{YY}", "{YYYY}-{MM}-{DD}")
    .replace("{M}/{D}", "{MM}-{DD}");
}

/**
 * Draw lines over x (seconds since 1970) on `element`, replacing what was there.
 * lines: [{label, kind (a key of STYLES), values (one per x, null where none)}]; the last
 * line is the one the read-out and a click speak of. window: [start, end] in seconds.
 */
export function draw(element, { x, lines, window, tz, readout, onPick, onDrawn }) {
  destroy();
  const opts = {
    width: Math.max(320, element.clientWidth),
    height: 380,
    tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1e3), tz),
    fmtDate: (template) => uPlot.fmtDate(iso(template)),
    scales: { x: { time: true, range: () => window } },
    legend: { show: false },
    cursor: { drag: { x: true, y: false }, points: { show: false } },
    series: [{}, ...lines.map((line) => ({ label: line.label, spanGaps: true, ...STYLES[line.kind] }))],
    axes: [{ stroke: "#444", grid: { stroke: "#eee" } }, { stroke: "#444", grid: { stroke: "#eee" }, size: 60 }],
    hooks: {
      setCursor: [(u) => readout(u.cursor.idx)],
      draw: [() => onDrawn && onDrawn()],
    },
  };
  current = new uPlot(opts, [x, ...lines.map((line) => line.values)], element);
  current.over.addEventListener("click", () => {
    if (current.cursor.idx != null) onPick(current.cursor.idx);
  });
}

export function destroy() {
  if (current) current.destroy();
  current = null;
}

export function resize(element) {
  if (current) current.setSize({ width: Math.max(320, element.clientWidth), height: 380 });
}
