// The CSV of what the chart shows, made in the page from the records it fetched (so it needs no
// second request, and works with a token).

export const COLUMNS = ["line", "known_time", "valid_time", "value"];

function field(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** One row per plotted point: its line (latest, revision, day_ahead), the known_time
 * of a revision, the valid_time and the value as the server sent them. */
export function csvText(sources) {
  const rows = [COLUMNS.join(",")];
  for (const source of sources) {
    for (const r of source.records) {
      rows.push([source.line || source.kind, source.known_time, r.valid_time, r.value].map(field).join(","));
    }
  }
  return `${rows.join("\n")}\n`;
}

export function download(filename, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
