// The page: a series browser, a chart of one series (latest, revisions, day-ahead), the audit
// trail of a clicked point, and a CSV of what is shown. Its whole state is in the URL hash, so
// a view can be linked and reloaded; every change goes through the hash (route() draws it).

import { token } from "./api.js";
import { loadBrowser, loadLabelValues } from "./browse.js";
import { resize } from "./chart.js";
import { csvText, download } from "./csv.js";
import { $, clearMessage, hashOf, readHash, setHash } from "./page.js";
import * as view from "./view.js";

const shown = { browse: null, view: null, audit: null }; // what is on screen, by its key

function fillForms(state) {
  for (const key of ["name", "labels", "unit"]) $(`f-${key}`).value = state[key] || "";
  $("v-start").value = view.toInput(state.start);
  $("v-end").value = view.toInput(state.end);
  $("v-as-of").value = view.toInput(state.as_of);
  $("v-view").value = state.view || "latest";
  $("v-days-ahead").value = state.days_ahead || "1";
  $("v-issue-time").value = state.issue_time || "";
  $("v-tz").value = state.tz || "";
  document.body.dataset.view = state.view || "latest";
}

function route() {
  clearMessage();
  const state = readHash();
  if (state.series && !(state.start && state.end)) {
    history.replaceState(null, "", hashOf({ ...view.defaultWindow(), ...state }));
    return route();
  }
  fillForms(state);
  $("pick-hint").hidden = Boolean(state.series);
  const browseKey = [state.name, state.labels, state.unit].join("\u0000");
  if (browseKey !== shown.browse) {
    shown.browse = browseKey;
    loadBrowser(state, 0);
  }
  if (!state.series) {
    $("series").hidden = true;
    shown.view = shown.audit = null;
    return undefined;
  }
  if (view.viewKey(state) !== shown.view) {
    shown.view = view.viewKey(state);
    view.loadView(state);
  }
  const auditKey = state.audit ? `${state.series}|${state.audit}` : null;
  if (auditKey !== shown.audit) {
    shown.audit = auditKey;
    if (auditKey) view.loadAudit(state);
    else $("audit").hidden = true;
  }
  return undefined;
}

function reloadAll() {
  shown.browse = shown.view = shown.audit = null;
  view.forgetRevisions();
  route();
}

function wire() {
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => resize($("chart")));
  $("token").value = token.get();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token.set($("token").value.trim());
    reloadAll();
  });
  $("token-forget").addEventListener("click", () => {
    token.set("");
    $("token").value = "";
    reloadAll();
  });
  $("filter").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = (id) => $(id).value.trim();
    setHash({ name: value("f-name"), labels: value("f-labels"), unit: value("f-unit") });
  });
  $("label-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("label-key").value.trim();
    if (key) loadLabelValues(readHash(), key);
  });
  for (const id of ["prev", "next"]) {
    $(id).addEventListener("click", () => loadBrowser(readHash(), Number($(id).dataset.page)));
  }
  $("view-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setHash({
      start: view.fromInput($("v-start").value),
      end: view.fromInput($("v-end").value),
      as_of: view.fromInput($("v-as-of").value),
      view: $("v-view").value === "latest" ? null : $("v-view").value,
      days_ahead: $("v-days-ahead").value,
      issue_time: $("v-issue-time").value,
      tz: $("v-tz").value.trim(),
      audit: null,
    });
  });
  $("v-view").addEventListener("change", () => $("view-form").requestSubmit());
  $("latest-now").addEventListener("click", () => setHash({ as_of: null }));
  const slider = $("as-of-slider");
  slider.addEventListener("input", () => ($("v-as-of").value = view.toInput(view.sliderAsOf(slider.value))));
  slider.addEventListener("change", () => setHash({ as_of: view.sliderAsOf(slider.value) }));
  $("csv").addEventListener("click", () => {
    const { series, state, sources } = view.shownData();
    download(`${series.name}-${state.view || "latest"}.csv`, csvText(sources));
  });
}

wire();
route();
