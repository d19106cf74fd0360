// Analysis jobs (GET /api/jobs/{id}...): the long computations of the learned page. A route answers 200 with its
// result when it is cached, or 202 with a job; `fetchResult` hides the difference, `runJob` follows a job's server-sent
// events (progress, then end) and fetches its result. Progress reaches the caller as the job's summary: status,
// done, total, and preview_url once the job drew a picture of its work so far.
import { ApiError, api } from "./api.js";

/**
 * Follow the job `created` (the 202 answer) until it ends: `onProgress(summary)` for every state, then the result.
 * Aborting `signal` stops following (the job goes on for whoever else asked for the same thing); `cancel: true`
 * also asks the server to stop it.
 */
export function runJob(created, { onProgress = () => {}, signal, label, cancel = false } = {}) {
  if (created.status === "done") return api(created.result_url, { label, signal });
  return new Promise((resolve, reject) => {
    const source = new EventSource(created.events_url);
    const finish = () => {
      source.close();
      signal?.removeEventListener("abort", abort);
    };
    const abort = () => {
      finish();
      if (cancel) fetch(created.status_url, { method: "DELETE" }).catch(() => {});
      reject(new DOMException("stopped following the job", "AbortError"));
    };
    if (signal?.aborted) {
      abort();
      return;
    }
    signal?.addEventListener("abort", abort);
    onProgress(created);
    source.addEventListener("progress", (event) => onProgress(JSON.parse(event.data)));
    source.addEventListener("end", (event) => {
      finish();
      const end = JSON.parse(event.data);
      onProgress(end);
      if (end.status === "done") resolve(api(end.result_url, { label, signal }));
      else reject(new ApiError(end.error_status ?? 409, end.error ?? `the computation was ${end.status}: try again`));
    });
    source.addEventListener("error", () => {
      // the browser reconnects by itself (sending Last-Event-ID); it gives up only when the server refuses
      if (source.readyState === EventSource.CLOSED) {
        finish();
        reject(new ApiError(0, "the server stopped reporting this computation's progress: try again"));
      }
    });
  });
}

/**
 * Call a route that answers 200 with a result or 202 with a job (`api`'s options, plus `onProgress` and `cancel`
 * as for `runJob`): the result either way.
 */
export async function fetchResult(path, { onProgress, cancel, ...options } = {}) {
  const response = await api(path, { ...options, as: "response" });
  const answer = await response.json();
  if (response.status !== 202) return answer;
  return runJob(answer, { onProgress, signal: options.signal, label: options.label, cancel });
}

/** "48 of 128 steps" (or "queued…") for a job's summary. */
export function progressText(summary, unit = "steps") {
  if (summary.status === "queued") return "queued…";
  if (!summary.total) return "starting…";
  return `${summary.done} of ${summary.total} ${unit}…`;
}
