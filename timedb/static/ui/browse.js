// The series browser: filters, counts, pages of series with their unit, labels and description
// (GET /series, /series/count and /series/labels).

import { Problem, get, getJson, nextCursor } from "./api.js";
import { $, busy, element, hashOf, pick, setHash } from "./page.js";

const PAGE = 50; // series per page
let cursors = [null]; // the cursor of each page up to the one shown

/** The labels filter as the API takes it, from "site=Gotland, model=ecmwf" or a JSON object. */
function labelsParam(text) {
  const trimmed = (text || "").trim();
  if (!trimmed || trimmed.startsWith("{")) return trimmed;
  const pairs = trimmed.split(",").map((pair) => pair.split("=").map((part) => part.trim()));
  if (pairs.some((pair) => pair.length !== 2 || !pair[0])) {
    const detail = "Write key=value pairs separated by commas (site=Gotland, model=ecmwf).";
    throw new Problem({ title: "Labels filter", detail });
  }
  return JSON.stringify(Object.fromEntries(pairs));
}

function filtersOf(state) {
  return { name: state.name, unit: state.unit, labels: labelsParam(state.labels) };
}

/** Show a page of the series that the state's filters match (page 0 starts over). */
export function loadBrowser(state, page) {
  if (page === 0) cursors = [null];
  return busy(async () => {
    const filters = filtersOf(state);
    const [response, count] = await Promise.all([
      get("series", { ...filters, limit: PAGE, cursor: cursors[page] }),
      getJson("series/count", filters),
    ]);
    const series = await response.json();
    const next = nextCursor(response);
    cursors = [...cursors.slice(0, page + 1), ...(next ? [next] : [])];
    $("series-rows").replaceChildren(...series.map((s) => seriesRow(s, state)));
    const first = page * PAGE;
    $("count").textContent = count.count
      ? `${count.count} series; ${first + 1}-${first + series.length} shown`
      : "No series match.";
    $("prev").disabled = page === 0;
    $("next").disabled = !next;
    $("prev").dataset.page = page - 1;
    $("next").dataset.page = page + 1;
  });
}

function seriesRow(series, state) {
  // a series picked keeps the filters, the window and the time zone
  const keep = pick(state, ["name", "labels", "unit", "start", "end", "tz"]);
  const name = element("td");
  name.append(element("a", series.name, { href: hashOf({ ...keep, series: series.series_id }) }));
  if (series.overlapping) name.append(" ", element("span", "revisions", { class: "badge" }));
  const labels = Object.entries(series.labels).map(([k, v]) => `${k}=${v}`).join(", ");
  const row = element("tr");
  row.append(name, element("td", series.unit), element("td", labels), element("td", series.description || ""));
  return row;
}

/** List the values a label key takes among the filtered series, as buttons that filter by them. */
export function loadLabelValues(state, key) {
  return busy(async () => {
    const answer = await getJson("series/labels", { ...filtersOf(state), label_key: key });
    const buttons = answer.values.map((value) => {
      const button = element("button", value, { type: "button" });
      const labels = [state.labels, `${key}=${value}`].filter(Boolean).join(", ");
      button.addEventListener("click", () => setHash({ labels }));
      return button;
    });
    $("label-values").replaceChildren(...(buttons.length ? buttons : [element("span", "none")]));
  });
}
