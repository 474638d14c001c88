// Steps on the audit console page (www/audit.*) that the end-to-end test and the
// console benchmark share: waiting for a search to be shown, and timing the first page
// of a fresh load.

/** Waits for the page to finish the search it started with `action`: the page sets
 *  `body[data-loaded]` when a page of rows is shown, or the status turns `failed`. */
export async function loaded(page, action) {
  const before = await page.evaluate(() => document.body.dataset.loaded ?? "");
  const statusBefore = await page.textContent("#status");
  await action();
  await page.waitForFunction(([b, s]) => (document.body.dataset.loaded ?? "") !== b || (document.querySelector("#status").className === "failed" && document.querySelector("#status").textContent !== s), [before, statusBefore], { timeout: 120000 });
}

/**
 * Reloads the console (its key already in IndexedDB) and waits for the first page of
 * rows. Returns `ms`, the wall time from the reload to the rows shown, as this process
 * sees it; `pageMs`, the page's own measure of it (`countersign:console:first-page`,
 * from the navigation's start; `undefined` for a page without it); `proofMs`, the
 * page's measure of `proveEntries` (from its status line); and `phases`, the page's
 * `performance.measure` entries named `countersign:console:*` and
 * `countersign:logView:*` (name, start and duration in ms from the navigation).
 */
export async function firstPage(page) {
  const started = Date.now();
  await loaded(page, () => page.reload());
  await page.waitForSelector("#rows tr");
  const ms = Date.now() - started;
  const proofMs = Number(/checked in (\d+) ms/.exec(await page.textContent("#status"))?.[1]);
  const phases = await page.evaluate(() => performance.getEntriesByType("measure")
    .filter((m) => /^countersign:(console|logView):/.test(m.name))
    .map((m) => ({ name: m.name, start: m.startTime, duration: m.duration })));
  const pageMs = phases.find((p) => p.name === "countersign:console:first-page")?.duration;
  return { ms, pageMs, proofMs, phases };
}

/** `phases` of `firstPage` as one line: each name (without `countersign:`) with its
 *  start and duration, in the order they started. */
export function describePhases(phases) {
  return [...phases]
    .sort((a, b) => a.start - b.start)
    .map((p) => `${p.name.replace(/^countersign:/, "")} @${p.start.toFixed(0)}+${p.duration.toFixed(1)}`)
    .join(", ");
}
