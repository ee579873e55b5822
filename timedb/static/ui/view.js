// One series: its chart (latest, revisions as a fan, day-ahead) for a window and an as_of, the
// read-out of the point under the mouse, the audit trail of a clicked point, and what is shown.

import { getJson } from "./api.js";
import { destroy, draw } from "./chart.js";
import { $, busy, element, setHash } from "./page.js";

const MAX_REVISIONS = 200; // faint lines drawn at most (the newest ones)
const DAY = 86400e3;
const VIEW_KEYS = ["series", "start", "end", "view", "as_of", "days_ahead", "issue_time", "tz"];

let shown = null; // the view drawn last: {series, state, sources, x, times, lines}
let viewAbort = null;
let revisionsCache = { key: null, promise: null };
let knownTimes = []; // the as_of slider's steps

/** What the chart shows: the series, the state and the lines of records (null: nothing). */
export function shownData() {
  return shown;
}

export function viewKey(state) {
  return VIEW_KEYS.map((key) => state[key] || "").join("|");
}

export function defaultWindow() {
  const now = Math.floor(Date.now() / 3600e3) * 3600e3;
  return { start: new Date(now - 7 * DAY).toISOString(), end: new Date(now + 2 * DAY).toISOString() };
}

/** Forget the revisions read (e.g. after the token changed). */
export function forgetRevisions() {
  revisionsCache = { key: null, promise: null };
}

/** The as_of of a position of the slider (the last position: none, the latest). */
export function sliderAsOf(position) {
  return knownTimes[position] || null;
}

// -- reading ----------------------------------------------------------------------------------------

/** Every revision in the window, grouped by known_time: one versions read per series and window,
 * never aborted (the next view, e.g. another as_of, uses it too). */
function revisions(base) {
  const key = JSON.stringify(base);
  if (revisionsCache.key !== key) {
    const promise = getJson("values", { ...base, versions: true }).then((answer) => {
      const groups = new Map();
      for (const r of answer.data) {
        if (!groups.has(r.known_time)) groups.set(r.known_time, []);
        groups.get(r.known_time).push(r);
      }
      return [...groups].map(([known_time, records]) => ({ known_time, records }));
    });
    promise.catch(forgetRevisions);
    revisionsCache = { key, promise };
  }
  return revisionsCache.promise;
}

/** The answers a view needs: the series, its latest values and, by view, revisions or day-ahead. */
function fetchView(state, signal) {
  const base = { series_id: state.series, start_valid: state.start, end_valid: state.end };
  const view = state.view || "latest";
  const dayAhead = { days_ahead: state.days_ahead || 1, issue_time: state.issue_time, tz: state.tz };
  return Promise.all([
    getJson(`series/${encodeURIComponent(state.series)}`, {}, signal),
    getJson("values", { ...base, as_of: state.as_of }, signal),
    view === "fan" ? revisions(base) : null,
    view === "dayahead" ? getJson("values", { ...base, as_of: state.as_of, ...dayAhead }, signal) : null,
  ]);
}

/** The lines to draw, the last one bold: the revisions known at as_of and the latest line, or the
 * day-ahead line over the latest one. */
function sourcesOf(state, latest, revs, dayAhead) {
  const asOf = Date.parse(state.as_of);
  const known = (revs || []).filter((r) => !state.as_of || Date.parse(r.known_time) <= asOf);
  const sources = known.slice(-MAX_REVISIONS).map((r) => ({ kind: "revision", label: r.known_time, ...r }));
  if (dayAhead) {
    sources.push({ kind: "reference", line: "latest", label: "latest", records: latest.data });
    sources.push({ kind: "day_ahead", label: "day-ahead", records: dayAhead.data });
  } else {
    sources.push({ kind: "latest", label: "latest", records: latest.data });
  }
  return { sources, known: known.length };
}

/** Records of a values answer as times (the server's strings), x (seconds) and values. */
function columns(records) {
  const times = records.map((r) => r.valid_time);
  const values = records.map((r) => r.value);
  const x = new Float64Array(records.length);
  for (let i = 0; i < records.length; i++) x[i] = Date.parse(times[i]) / 1e3;
  return { times, x, values };
}

/** Lines of records on one shared x axis (null where a line has no point), as uPlot wants them. */
function align(sources) {
  if (sources.length === 1) {
    const only = columns(sources[0].records);
    return { x: only.x, times: only.times, lines: [{ ...sources[0], values: only.values }] };
  }
  const at = new Map(); // ms -> the valid_time as the server wrote it
  for (const source of sources) {
    for (const r of source.records) {
      const ms = Date.parse(r.valid_time);
      if (!at.has(ms)) at.set(ms, r.valid_time);
    }
  }
  const ms = [...at.keys()].sort((a, b) => a - b);
  const index = new Map(ms.map((m, i) => [m, i]));
  const lines = sources.map((source) => {
    const values = new Array(ms.length).fill(null);
    for (const r of source.records) values[index.get(Date.parse(r.valid_time))] = r.value;
    return { ...source, values };
  });
  return { x: Float64Array.from(ms, (m) => m / 1e3), times: ms.map((m) => at.get(m)), lines };
}

// -- drawing ----------------------------------------------------------------------------------------

/** Read and draw the view of a state (a newer call aborts an older one's requests). */
export function loadView(state) {
  if (viewAbort) viewAbort.abort();
  const abort = (viewAbort = new AbortController());
  return busy(async () => {
    try {
      await drawView(state, abort.signal);
    } catch (error) {
      if (error.name !== "AbortError") {
        destroy(); // no chart of another series or window under the message
        shown = null;
        showStatus("");
        $("csv").disabled = true;
      }
      throw error;
    }
  });
}

async function drawView(state, signal) {
  const started = performance.now();
  showStatus("Loading…");
  const [series, latest, revs, dayAhead] = await fetchView(state, signal);
  const fetched = performance.now();
  showSeries(series);
  const { sources, known } = sourcesOf(state, latest, revs, dayAhead);
  $("as-of-slider").hidden = !revs;
  if (revs) asOfSlider(revs, state, known);
  shown = { series, state, sources, ...align(sources) };
  const points = sources.reduce((n, s) => n + s.records.length, 0);
  const note = known > MAX_REVISIONS ? `; the newest ${MAX_REVISIONS} of ${known} revisions drawn` : "";
  if (!points) {
    const asOf = state.as_of ? ` as of ${state.as_of}` : "";
    showStatus(`No values between ${state.start} and ${state.end}${asOf}.`, { points: 0 });
  }
  const data = shown;
  let first = true;
  draw($("chart"), {
    x: data.x,
    lines: data.lines,
    window: [Date.parse(state.start) / 1e3, Date.parse(state.end) / 1e3],
    tz: state.tz || "UTC",
    readout: (index) => showReadout(data, index),
    onPick: (index) => setHash({ audit: data.times[index] }),
    onDrawn: () => {
      if (!first || !points) return;
      first = false;
      const drawn = performance.now();
      performance.measure("timedb-ui:render", { start: started, end: drawn });
      const took = `fetched in ${Math.round(fetched - started)} ms, drawn in ${Math.round(drawn - fetched)} ms`;
      showStatus(`${points.toLocaleString("en")} points: ${took}${note}.`, { points, ms: Math.round(drawn - started) });
    },
  });
  $("csv").disabled = !points;
}

function showSeries(series) {
  $("series").hidden = false;
  $("series-title").textContent = `${series.name} (${series.unit})`;
  const labels = Object.entries(series.labels).map(([k, v]) => `${k}=${v}`).join(", ");
  const kind = series.overlapping ? "overlapping (forecasts with revisions)" : "flat";
  const facts = [`series ${series.series_id}`, kind, labels, series.description];
  $("series-meta").textContent = facts.filter(Boolean).join(" · ");
  $("view-fan").disabled = !series.overlapping;
}

/** The status line, and (for tests and bench/ui_render.py) the points drawn and the milliseconds
 * from request to drawn chart as data attributes; empty while loading. */
function showStatus(text, { points = "", ms = "" } = {}) {
  const status = $("status");
  status.textContent = text;
  Object.assign(status.dataset, { points, ms });
}

function asOfSlider(revs, state, known) {
  const slider = $("as-of-slider");
  knownTimes = revs.map((r) => r.known_time);
  slider.max = revs.length; // one step per known_time; the last step: no as_of (the latest)
  slider.value = state.as_of ? Math.max(0, known - 1) : revs.length;
}

function showReadout(data, index) {
  if (index === null || index === undefined) return;
  const parts = data.lines
    .filter((line) => line.kind !== "revision")
    .map((line) => `${line.label}: ${line.values[index] ?? "–"} ${data.series.unit}`);
  const revisionCount = data.lines.filter((line) => line.kind === "revision" && line.values[index] !== null).length;
  if (revisionCount) parts.push(`${revisionCount} revisions`);
  const readout = $("readout");
  readout.textContent = `${data.times[index]} · ${parts.join(" · ")}`;
  readout.dataset.validTime = data.times[index];
}

// -- the audit trail --------------------------------------------------------------------------------

const AUDIT_COLUMNS = ["known_time", "change_time", "value", "changed_by", "annotation", "tags", "batch_id"];

/** List every stored row of one valid_time (include_updates=true over that instant). */
export function loadAudit(state) {
  return busy(async () => {
    const end = new Date(Date.parse(state.audit) + 1).toISOString(); // the next millisecond
    const answer = await getJson("values", {
      series_id: state.series,
      start_valid: state.audit,
      end_valid: end,
      include_updates: true,
    });
    $("audit-title").textContent = `Audit trail of ${state.audit}: ${answer.count} rows`;
    const rows = answer.data.map((r) => {
      const row = element("tr");
      for (const key of AUDIT_COLUMNS) row.append(element("td", key === "tags" && r.tags ? r.tags.join(", ") : r[key]));
      return row;
    });
    $("audit-rows").replaceChildren(...rows);
    $("audit").hidden = false;
  });
}

// -- the form's date fields (UTC) -------------------------------------------------------------------

export function toInput(iso) {
  return iso ? new Date(iso).toISOString().slice(0, 19) : "";
}

export function fromInput(value) {
  return value ? new Date(`${value}Z`).toISOString() : "";
}
