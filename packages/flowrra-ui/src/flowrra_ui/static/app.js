// Flowrra UI: the dashboard page. Plain ES2020, no framework and nothing from a CDN.
// Every piece of data is put on the page as text (textContent / text nodes), never as
// HTML, so task arguments and error messages holding markup are shown, not run.
// "?task=<id>" in the page's URL opens that task's execution (and a click puts it there).
"use strict";

(() => {
  // The mount root (".../flowrra/"): this script is served from "<root>static/app.js".
  const BASE = new URL("..", document.currentScript.src);
  const POLL_SECONDS = 15;
  const PAGE_SIZE = 25;
  const FEED_SIZE = 100;
  const VIEWS = ["dashboard", "executions", "tasks", "schedules", "dead-letters"];
  const STATUSES = ["pending", "running", "retrying", "success", "failed", "cancelled"];

  const state = {
    meta: { writable: false, scheduler: false, dead_letters: false, cancel: false, hint: "",
      live: "websocket" },
    tasks: [],
    // Executions paging: the cursor of the page shown (null: the first), the next page's
    // (null: none), how many records come before this page, and the pages back.
    cursor: null,
    next: null,
    before: 0,
    shown: 0,
    back: [],
    live: "connecting",
    liveSource: null, // the open WebSocket or EventSource
    wsDelay: 2000,
    refreshTimer: null,
    loading: false,
    detail: null, // the execution shown in the detail dialog ({task_id, status}), if open
  };

  // -- DOM helpers -----------------------------------------------------------------------

  const $ = (selector) => document.querySelector(selector);

  // el("td", {class: "x"}, "text", childNode): attributes are set as attributes, "on…"
  // keys as listeners, and children are appended as nodes or as text.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    for (const child of children) node.append(child instanceof Node ? child : String(child));
    return node;
  }

  const badge = (status) => el("span", { class: `status ${status}` }, status);
  const empty = (text) => el("p", { class: "empty" }, text);

  function fmtTime(iso) {
    return iso ? new Date(iso).toLocaleString() : "—";
  }

  function fmtDuration(start, end) {
    if (!start || !end) return "—";
    const ms = new Date(end) - new Date(start);
    return ms < 1000 ? `${Math.max(0, Math.round(ms))} ms` : `${(ms / 1000).toFixed(2)} s`;
  }

  // The tail: the ids one process makes share their first half.
  const shortId = (id) => (id.length > 12 ? `…${id.slice(-12)}` : id);
  const percent = (progress) => `${Math.round(Number(progress.fraction) * 100)}%`;
  const json = (value) => JSON.stringify(value, null, 2);

  // -- the API ---------------------------------------------------------------------------

  class ApiFailure extends Error {
    constructor(status, message, data) {
      super(message);
      this.status = status;
      this.data = data || {};
    }
  }

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : null;
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    // Every change is sent as JSON, a body or not: the server refuses anything else (415),
    // which is what an HTML form on another site could send.
    if (method !== "GET") headers["Content-Type"] = "application/json";
    if (body !== undefined) init.body = JSON.stringify(body);
    const token = method === "GET" ? null : csrfToken(); // Django's CSRF protection
    if (token) headers["X-CSRFToken"] = token;
    let response;
    try {
      response = await fetch(new URL(path, BASE), init);
    } catch {
      throw new ApiFailure(0, "the server cannot be reached");
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message = data && typeof data.error === "string" ? data.error : `HTTP ${response.status}`;
      throw new ApiFailure(response.status, message, data);
    }
    return data;
  }

  function showError(error) {
    const notice = $("#notice-error");
    if (!error) {
      notice.hidden = true;
      return;
    }
    notice.textContent = error.status === 401 || error.status === 403
      ? `Not allowed: ${error.message}`
      : `Could not load: ${error.message}`;
    notice.hidden = false;
  }

  // -- views -----------------------------------------------------------------------------

  function currentView() {
    const name = location.hash.slice(1);
    return VIEWS.includes(name) ? name : "dashboard";
  }

  function showView() {
    const view = currentView();
    for (const name of VIEWS) $(`#view-${name}`).hidden = name !== view;
    for (const link of document.querySelectorAll("nav a")) {
      if (link.dataset.view === view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    refresh();
  }

  const loaders = {
    async dashboard() {
      const [stats, workers, queues] = await Promise.all(
        [api("GET", "api/stats"), api("GET", "api/workers"), api("GET", "api/queues")]);
      renderTotals(stats);
      renderChart(stats.throughput);
      renderQueues(stats.queues);
      renderQueueList(queues);
      renderWorkers(workers);
      renderFailures(stats.recent_failures);
    },
    async executions() {
      const form = $("#filters");
      const wanted = form.id.value.trim();
      if (wanted) {
        // One task by its id (the status and task filters do not apply).
        try {
          renderExecutions([await api("GET", `api/executions/${encodeURIComponent(wanted)}`)], true);
        } catch (error) {
          if (error.status !== 404) throw error;
          renderExecutions([], true, `No task with id ${wanted}.`);
        }
        return;
      }
      const query = new URLSearchParams({ limit: PAGE_SIZE });
      if (state.cursor) query.set("cursor", state.cursor);
      if (form.status.value) query.set("status", form.status.value);
      if (form.task.value) query.set("task", form.task.value);
      const page = await api("GET", `api/executions?${query}`);
      state.next = page.next_cursor;
      renderExecutions(page.items);
    },
    async tasks() {
      state.tasks = await api("GET", "api/tasks");
      renderTasks();
    },
    async schedules() {
      if (!state.meta.scheduler) {
        renderSchedules(null);
        return;
      }
      renderSchedules(await api("GET", "api/schedules"));
    },
    async "dead-letters"() {
      const unavailable = $("#dead-letters-unavailable");
      const why = !state.meta.writable
        ? `Dead letters are for those who may make changes: ${state.meta.hint}`
        : !state.meta.dead_letters
          ? "Dead letters are not available for this app's broker: it keeps none that can be " +
            "listed, requeued or purged from here (the Redis broker does)."
          : null;
      unavailable.hidden = why === null;
      unavailable.textContent = why ?? "";
      $("#dead-letters-work").hidden = why !== null;
      if (why === null) renderDeadLetters((await api("GET", "api/dead-letters")).items);
    },
  };

  async function refresh() {
    if (state.loading) {
      scheduleRefresh();
      return;
    }
    state.loading = true;
    try {
      await loaders[currentView()]();
      showError(null);
      document.body.dataset.loaded = String(Date.now());
    } catch (error) {
      showError(error);
    } finally {
      state.loading = false;
    }
  }

  // Many events in a burst cost one reload, at most one a second.
  function scheduleRefresh() {
    if (state.refreshTimer !== null) return;
    state.refreshTimer = setTimeout(() => {
      state.refreshTimer = null;
      refresh();
    }, 1000);
  }

  // -- dashboard -------------------------------------------------------------------------

  function renderTotals(stats) {
    const cards = STATUSES.map((status) =>
      el("div", { class: `card ${status}`, "data-status": status },
        el("div", { class: "label" }, status),
        el("div", { class: "value" }, String(stats.totals[status] ?? 0))));
    cards.push(el("div", { class: "card" },
      el("div", { class: "label" }, "tasks registered"),
      el("div", { class: "value" }, String(stats.tasks_registered))));
    $("#totals").replaceChildren(...cards);
    $("#totals").title = stats.exact
      ? "Live statuses: tasks in them now. Success and failed: every completion recorded"
        + ` since the counts began (${stats.retries ?? 0} retries).`
      : `Counted over the latest ${stats.sampled} records`;
  }

  function renderChart(points) {
    // Drawn at the panel's own width, so labels keep their size on a phone.
    const width = Math.max(300, $("#chart").clientWidth || 640);
    const height = 180;
    const left = 36;
    const bottom = 22;
    const top = 10;
    const max = Math.max(1, ...points.map((p) => p.completed));
    const plot = height - bottom - top;
    const step = (width - left) / Math.max(1, points.length);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": "Tasks completed per minute" });
    for (const fraction of max % 2 === 0 ? [0, 0.5, 1] : [0, 1]) {
      const y = top + plot * (1 - fraction);
      chart.append(svg("line", { class: "gridline", x1: left, x2: width, y1: y, y2: y }));
      chart.append(svg("text", { class: "axis", x: left - 6, y: y + 4, "text-anchor": "end" },
        String(Math.round(max * fraction))));
    }
    points.forEach((point, i) => {
      const h = (point.completed / max) * plot;
      const minute = new Date(point.minute * 1000);
      const label = minute.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      chart.append(svg("rect", { class: "bar", x: left + i * step + step * 0.12, y: top + plot - h,
        width: step * 0.76, height: Math.max(h, 0) },
        svg("title", {}, `${label}: ${point.completed} completed`)));
      if (i === 0 || i === points.length - 1 || i === Math.floor(points.length / 2)) {
        chart.append(svg("text", { class: "axis", x: left + i * step + step / 2, y: height - 6,
          "text-anchor": "middle" }, label));
      }
    });
    $("#chart").replaceChildren(chart);
  }

  function table(headers, rows) {
    return el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)));
  }

  function renderQueues(queues) {
    const names = Object.keys(queues || {});
    $("#queues").replaceChildren(names.length
      ? table(["State", "Messages"], names.map((name) =>
        el("tr", { "data-queue": name }, el("td", {}, name), el("td", {}, String(queues[name])))))
      : empty("No queue information."));
  }

  function renderQueueList(queues) {
    const names = Object.keys(queues || {});
    const count = (entry, key) => String(entry[key] ?? 0);
    $("#queue-list").replaceChildren(names.length > 1 || names.some((n) => queues[n].priorities)
      ? table(["Queue", "Queued", "Delayed", "Running", "Queued by priority"], names.map((name) => {
        const entry = queues[name];
        // Lowest (the first to run) first: an object's integer keys ("0", "5") would
        // otherwise come before "-1", whatever order the server sent.
        const priorities = Object.entries(entry.priorities || {})
          .sort(([a], [b]) => Number(a) - Number(b))
          .map(([priority, n]) => `${priority}: ${n}`).join(", ");
        return el("tr", { "data-named-queue": name }, el("td", {}, name),
          el("td", {}, count(entry, "queued")), el("td", {}, count(entry, "delayed")),
          el("td", {}, count(entry, "leased")), el("td", {}, priorities || "—"));
      }))
      : empty(""));
  }

  function renderWorkers(workers) {
    if (!workers.length) {
      $("#workers").replaceChildren(empty(
        "No worker heartbeats: tasks run in this process (embedded), or no worker is up."));
      return;
    }
    $("#workers").replaceChildren(table(["Host", "PID", "Slots", "Busy", "Done", "Up since"],
      workers.map((w) => el("tr", {},
        el("td", { title: String(w.id) }, String(w.host)),
        // A child of `flowrra worker --processes`: its index, its supervisor's pid.
        w.supervisor != null
          ? el("td", { title: `process ${w.process} of supervisor ${w.supervisor}` },
            `${w.pid} (#${w.process})`)
          : el("td", {}, String(w.pid)),
        el("td", {}, String(w.concurrency)),
        el("td", {}, String(w.busy ?? "—")),
        el("td", {}, String(w.processed ?? "—")),
        el("td", {}, w.started ? new Date(w.started * 1000).toLocaleString() : "—")))));
  }

  function renderFailures(failures) {
    $("#failures").replaceChildren(failures.length
      ? table(["Task", "Error", "Finished"], failures.map((record) =>
        el("tr", { class: "clickable", "data-id": record.task_id, onclick: () => openDetail(record.task_id) },
          el("td", {}, record.task_name ?? "?"),
          el("td", { class: "mono" }, record.error ?? ""),
          el("td", {}, fmtTime(record.finished_at)))))
      : empty("No failures among the recent tasks."));
  }

  // -- live events -----------------------------------------------------------------------

  // A running task's progress as text: "50% · parsed 4,000 rows".
  const progressText = (progress) =>
    progress.message ? `${percent(progress)} · ${progress.message}` : percent(progress);

  // The state cell of an execution: its status, and a running task's progress.
  const stateCell = (status, progress) => [badge(status),
    status === "running" && progress ? el("span", { class: "percent" }, percent(progress)) : null];

  function onEvent(event) {
    const feed = $("#feed");
    const id = CSS.escape(event.task_id);
    // Progress reports update the task's "running" line instead of adding one each.
    const reported = event.status === "running" && event.progress
      ? feed.querySelector(`li[data-id="${id}"][data-status="running"]`) : null;
    const item = el("li", { "data-id": event.task_id, "data-status": event.status },
      el("span", { class: "when" }, new Date(event.at || Date.now()).toLocaleTimeString()),
      badge(event.status),
      el("strong", {}, event.task_name ?? "?"),
      el("button", { type: "button", class: "mono", onclick: () => openDetail(event.task_id) },
        shortId(event.task_id)),
      event.error ? el("span", { class: "mono muted" }, event.error) : null,
      event.progress ? el("span", { class: "muted progress-text" }, progressText(event.progress)) : null);
    if (reported) reported.replaceWith(item);
    else feed.prepend(item);
    while (feed.children.length > FEED_SIZE) feed.lastElementChild.remove();
    if (state.detail && state.detail.task_id === event.task_id) updateDetail(event);
    const view = currentView();
    if (view === "executions") {
      const row = document.querySelector(`#executions-table tr[data-id="${id}"]`);
      if (row) {
        row.querySelector("td.state").replaceChildren(...stateCell(event.status, event.progress));
        row.dataset.status = event.status;
      }
      if (!row || event.status === "success" || event.status === "failed") scheduleRefresh();
    } else if (view === "dashboard") {
      scheduleRefresh();
    }
  }

  // "live": events arrive; "reconnecting": the server lost its event subscription (Redis
  // down) and says so until it holds again; "polling": no stream, the page refreshes.
  function setLive(mode) {
    state.live = mode;
    const pill = $("#live");
    const notice = $("#notice-live");
    pill.className = `pill ${mode}`;
    if (mode === "live") {
      pill.textContent = "Live";
      notice.hidden = true;
    } else if (mode === "reconnecting") {
      pill.textContent = "Reconnecting…";
      notice.textContent = "Live updates are interrupted: the server lost its event subscription (is Redis down?). This page reloads what it shows when they are back; meanwhile it refreshes every " + `${POLL_SECONDS} seconds.`;
      notice.hidden = false;
    } else {
      pill.textContent = `Polling every ${POLL_SECONDS} s`;
      notice.textContent = `Live updates are unavailable (the ${state.meta.live === "sse" ? "event stream" : "WebSocket"} could not connect), so this page refreshes every ${POLL_SECONDS} seconds.`;
      notice.hidden = false;
    }
  }

  // The server's messages, over a WebSocket or Server-Sent Events alike.
  function onLiveMessage(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (event.type === "ready") {
      // The server's subscription holds from here: only now is the page live, and the
      // refresh catches up on what happened before it (or while it was lost: events of
      // the gap are not replayed, so the current view is reloaded).
      state.wsDelay = 2000;
      setLive("live");
      refresh();
    } else if (event.type === "reconnecting") {
      setLive("reconnecting");
    } else if (event.type === "dropped") {
      state.liveSource?.close(); // too far behind: connect again, and reload on "ready"
      retryLive();
    } else if (event.type === "events") {
      // Several task events that waited for this page, in order, in one frame.
      for (const one of Array.isArray(event.events) ? event.events : []) {
        if (one && typeof one === "object" && !one.type) onEvent(one);
      }
    } else if (!event.type) {
      onEvent(event);
    }
  }

  // WebSocket ("<mount>/ws") or Server-Sent Events ("<mount>/events"): what /api/meta
  // says this mount serves.
  function connectLive() {
    let source;
    try {
      if (state.meta.live === "sse") {
        source = new EventSource(new URL("events", BASE));
        // EventSource would retry by itself; the page retries with its own backoff.
        source.addEventListener("error", () => {
          source.close();
          if (state.liveSource === source) retryLive();
        });
      } else {
        const url = new URL("ws", BASE);
        url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
        source = new WebSocket(url);
        source.addEventListener("close", () => {
          if (state.liveSource === source) retryLive();
        });
      }
    } catch {
      retryLive();
      return;
    }
    state.liveSource = source;
    source.addEventListener("message", (message) => {
      if (state.liveSource === source) onLiveMessage(message.data);
    });
  }

  function retryLive() {
    state.liveSource = null;
    setLive("polling");
    setTimeout(connectLive, state.wsDelay);
    state.wsDelay = Math.min(state.wsDelay * 2, 60000);
  }

  // -- executions ------------------------------------------------------------------------

  function renderExecutions(items, single = false, none = null) {
    const rows = items.map((record) =>
      el("tr", { class: "clickable", "data-id": record.task_id, "data-status": record.status,
        onclick: () => openDetail(record.task_id) },
        el("td", { class: "task" }, record.task_name ?? "?"),
        el("td", { class: "state" }, stateCell(record.status, record.progress)),
        el("td", { class: "mono", title: record.task_id }, shortId(record.task_id)),
        el("td", {}, String(record.retries)),
        el("td", {}, fmtTime(record.submitted_at)),
        el("td", {}, fmtDuration(record.started_at, record.finished_at))));
    if (!rows.length) {
      rows.push(el("tr", {}, el("td", { colspan: 6, class: "empty" },
        none ?? (state.before ? "No older executions." : "No executions match."))));
    }
    $("#executions-table tbody").replaceChildren(...rows);
    state.shown = single ? 0 : items.length;
    $("#prev").disabled = single || state.back.length === 0;
    $("#next").disabled = single || !state.next;
    $("#page-info").textContent = single || !items.length
      ? ""
      : `${state.before + 1}–${state.before + items.length}, newest first`;
  }

  // Back to the newest executions (a filter changed).
  function firstPage() {
    state.cursor = null;
    state.next = null;
    state.before = 0;
    state.back = [];
  }

  // The open task's id in the page's URL, so the address bar can be shared.
  function linkTask(taskId) {
    const url = new URL(location.href);
    if (taskId) url.searchParams.set("task", taskId);
    else url.searchParams.delete("task");
    if (url.href !== location.href) history.replaceState(history.state, "", url);
  }

  async function openDetail(taskId) {
    const dialog = $("#detail");
    const body = $("#detail-body");
    $("#detail-title").textContent = "Execution";
    body.replaceChildren(empty("Loading…"));
    if (!dialog.open) dialog.showModal();
    linkTask(taskId);
    const shown = { task_id: taskId, status: null };
    state.detail = shown;
    let record;
    try {
      record = await api("GET", `api/executions/${encodeURIComponent(taskId)}`);
    } catch (error) {
      if (state.detail === shown) body.replaceChildren(el("p", { class: "message error" }, error.message));
      return;
    }
    if (state.detail === shown) renderDetail(record); // not closed, nor another opened
  }

  // The progress bar of a running task: the fraction as a bar and a percentage, and what
  // the task says it is doing.
  function progressBlock(progress) {
    const fraction = Math.min(1, Math.max(0, Number(progress.fraction) || 0));
    return el("div", { class: "progress", id: "detail-progress" },
      el("progress", { max: 1, value: fraction, "aria-label": "Progress" }),
      el("span", { class: "percent" }, percent(progress)),
      progress.message ? el("p", { class: "progress-message" }, progress.message) : null);
  }

  // An event about the open execution: a progress report updates its bar in place; a new
  // status reloads it (its result, error and timings).
  async function updateDetail(event) {
    const shown = state.detail;
    if (shown.status === null) return; // still loading: it will show what is stored
    if (event.status === shown.status && event.status === "running") {
      if (event.progress) {
        const block = progressBlock(event.progress);
        const old = $("#detail-progress");
        if (old) old.replaceWith(block);
        else $("#detail-body").prepend(block);
      }
      return;
    }
    if (event.status === shown.status) return;
    const asked = (shown.asked = (shown.asked || 0) + 1); // only the latest answer is shown
    try {
      const record = await api("GET", `api/executions/${encodeURIComponent(event.task_id)}`);
      if (state.detail === shown && shown.asked === asked) renderDetail(record);
    } catch {
      // the dialog keeps what it shows; the next event or opening tries again
    }
  }

  function renderDetail(record) {
    state.detail.status = record.status; // the same object while the same task stays open
    const body = $("#detail-body");
    $("#detail-title").replaceChildren(`${record.task_name ?? "?"} `, badge(record.status));
    const facts = [
      ["Id", el("span", { class: "mono" }, record.task_id)],
      ["Priority", String(record.priority)],
      ["Queue", record.queue || "default"],
      ["Retries", String(record.retries)],
      ["Submitted", fmtTime(record.submitted_at)],
      ["Started", fmtTime(record.started_at)],
      ["Finished", fmtTime(record.finished_at)],
      ["Duration", fmtDuration(record.started_at, record.finished_at)],
    ];
    const parts = [
      record.status === "running" && record.progress ? progressBlock(record.progress) : null,
      el("dl", { class: "kv" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      el("h2", {}, "Arguments"),
      el("pre", { class: "args" }, json(record.args)),
    ];
    if (Object.keys(record.kwargs || {}).length) {
      parts.push(el("h2", {}, "Keyword arguments"), el("pre", { class: "kwargs" }, json(record.kwargs)));
    }
    const headers = Object.entries(record.headers || {});
    if (headers.length) {
      parts.push(el("h2", {}, "Headers"), el("dl", { class: "headers" },
        headers.map(([name, value]) => [el("dt", { class: "mono" }, name),
          el("dd", { class: "mono" }, String(value))])));
    }
    if (record.status === "success") parts.push(el("h2", {}, "Result"), el("pre", { class: "result" }, json(record.result)));
    if (record.error) parts.push(el("h2", {}, "Error"), el("pre", { class: "error" }, record.error));
    if (record.traceback) parts.push(el("h2", {}, "Traceback"), el("pre", { class: "traceback" }, record.traceback));
    if (record.status === "failed" || record.status === "cancelled") parts.push(retryControl(record));
    if (state.meta.cancel && ["pending", "running", "retrying"].includes(record.status)) {
      parts.push(cancelControl(record));
    }
    body.replaceChildren(...parts.filter(Boolean));
  }

  function retryControl(record) {
    const message = el("p", { class: "message", role: "status" });
    const button = el("button", { type: "button", class: "primary", id: "retry",
      disabled: !state.meta.writable, title: state.meta.writable ? null : state.meta.hint });
    button.textContent = "Retry this task";
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const answer = await api("POST", `api/executions/${encodeURIComponent(record.task_id)}/retry`);
        message.className = "message ok";
        message.replaceChildren("Submitted again as ",
          el("button", { type: "button", class: "mono", onclick: () => openDetail(answer.task_id) },
            answer.task_id));
      } catch (error) {
        message.className = "message error";
        message.textContent = error.message;
        button.disabled = false;
      }
    });
    return el("div", {}, button, state.meta.writable ? null : el("p", { class: "muted" }, state.meta.hint), message);
  }

  function cancelControl(record) {
    const message = el("p", { class: "message", role: "status" });
    const button = el("button", { type: "button", class: "danger", id: "cancel",
      disabled: !state.meta.writable, title: state.meta.writable ? null : state.meta.hint });
    button.textContent = "Cancel this task";
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const answer = await api("POST", `api/executions/${encodeURIComponent(record.task_id)}/cancel`);
        // The record changed: show it as it is now (CANCELLED, or how it finished).
        await openDetail(record.task_id);
        const shown = $("#detail-body");
        shown.append(el("p", { class: answer.cancelled ? "message ok" : "message", role: "status" },
          {
            removed: "Cancelled: it will not run.",
            signalled: "Cancelled: its worker was told to stop it.",
            already_complete: "It had already finished: nothing to cancel.",
          }[answer.outcome] || answer.outcome));
      } catch (error) {
        message.className = "message error";
        message.textContent = error.message;
        button.disabled = false;
      }
    });
    return el("div", {}, button, message);
  }

  // -- tasks -----------------------------------------------------------------------------

  function renderTasks() {
    const rows = state.tasks.map((task) => el("tr", { "data-task": task.name },
      el("td", { class: "mono" }, task.name),
      el("td", {}, task.cpu_bound ? "CPU (process pool)" : "I/O (asyncio)"),
      el("td", {}, String(task.max_retries)),
      el("td", {}, `${task.retry_delay} s (max ${task.retry_max_delay} s)`),
      el("td", {}, task.timeout === null ? "none" : `${task.timeout} s`),
      el("td", {}, task.doc ?? "")));
    $("#tasks-table tbody").replaceChildren(...rows);
  }

  function fillTaskChoices() {
    const names = state.tasks.map((task) => task.name);
    const filter = $("#filters").task;
    const chosen = filter.value;
    filter.replaceChildren(el("option", { value: "" }, "any"), ...names.map((n) => el("option", { value: n }, n)));
    filter.value = chosen;
    $("#schedule-form").task_name.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  }

  // -- schedules -------------------------------------------------------------------------

  function describeSchedule(s) {
    if (s.schedule_type === "cron") return `cron ${s.schedule} (${s.timezone})`;
    if (s.schedule_type === "interval") return `every ${s.schedule} s`;
    return `once at ${fmtTime(s.schedule)}`;
  }

  function renderSchedules(schedules) {
    const form = $("#schedule-form");
    form.hidden = schedules === null;
    const tbody = $("#schedules-table tbody");
    if (schedules === null) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "empty" },
        "This app has no scheduler: call app.create_scheduler() where the app is made.")));
      return;
    }
    // data-label: each cell's heading, shown beside it where the table becomes cards (phones).
    const rows = schedules.map((s) => el("tr", { "data-id": s.id },
      el("td", { "data-label": "Task" }, el("div", {}, el("strong", {}, s.task_name),
        s.description ? el("div", { class: "muted" }, s.description) : null)),
      el("td", { class: "mono", "data-label": "Schedule" }, describeSchedule(s)),
      el("td", { "data-label": "Next run" }, fmtTime(s.next_run_at)),
      el("td", { "data-label": "Last run" }, fmtTime(s.last_run_at)),
      el("td", { "data-label": "Runs" }, String(s.run_count)),
      el("td", { class: "state", "data-label": "State" }, s.enabled
        ? el("span", { class: "status success" }, "enabled")
        : el("span", { class: "status disabled" }, "disabled")),
      el("td", { class: "actions-cell", "data-label": "Actions" }, scheduleActions(s))));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No schedules yet.")));
    tbody.replaceChildren(...rows);
  }

  function scheduleActions(s) {
    const locked = !state.meta.writable;
    const hint = locked ? state.meta.hint : null;
    const act = (label, cls, run, action = label.toLowerCase()) => el("button", {
      type: "button", class: cls, disabled: locked, title: hint, "data-action": action,
      onclick: async (e) => {
        e.target.disabled = true;
        try {
          await run();
          showError(null);
        } catch (error) {
          showError(error);
        }
        refresh();
      } }, label);
    const id = encodeURIComponent(s.id);
    return el("div", { class: "actions" },
      act("Run now", "", async () => {
        const message = $("#schedules-message");
        try {
          const answer = await api("POST", `api/schedules/${id}/run`);
          message.className = "message ok";
          message.replaceChildren(`Submitted ${answer.task_name} now as `,
            el("button", { type: "button", class: "mono", onclick: () => openDetail(answer.task_id) },
              answer.task_id), " (the schedule's next run is unchanged).");
        } catch (error) {
          message.className = "message error";
          message.textContent = error.message;
        }
      }, "run"),
      s.enabled
        ? act("Disable", "", () => api("PUT", `api/schedules/${id}/disable`))
        : act("Enable", "", () => api("PUT", `api/schedules/${id}/enable`)),
      act("Delete", "danger", async () => {
        if (confirm(`Delete the schedule of ${s.task_name} (${describeSchedule(s)})?`)) {
          await api("DELETE", `api/schedules/${id}`);
        }
      }));
  }

  function showKindFields() {
    const form = $("#schedule-form");
    for (const label of form.querySelectorAll("[data-kind]")) label.hidden = label.dataset.kind !== form.kind.value;
  }

  async function createSchedule(event) {
    event.preventDefault();
    const form = event.target;
    const message = $("#schedule-message");
    const say = (text, ok) => {
      message.className = `message ${ok ? "ok" : "error"}`;
      message.textContent = text;
    };
    const kind = form.kind.value;
    const body = { task_name: form.task_name.value };
    try {
      body.args = JSON.parse(form.args.value || "[]");
      body.kwargs = JSON.parse(form.kwargs.value || "{}");
    } catch {
      say("Arguments must be JSON: an array, and an object for keyword arguments.", false);
      return;
    }
    body.priority = Number.parseInt(form.priority.value || "0", 10);
    if (form.description.value) body.description = form.description.value;
    if (kind === "cron") {
      body.cron = form.cron.value.trim();
      body.timezone = form.timezone.value.trim() || "UTC";
    } else if (kind === "interval") {
      body.interval = form.interval.value === "" ? null : Number(form.interval.value);
    } else {
      if (!form.run_at.value) {
        say("Choose when the task should run.", false);
        return;
      }
      body.run_at = new Date(form.run_at.value).toISOString(); // local time → UTC instant
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const made = await api("POST", `api/schedules/${kind}`, body);
      say(`Created: ${made.task_name}, ${describeSchedule(made)}.`, true);
      await refresh();
    } catch (error) {
      say(error.message, false);
    } finally {
      button.disabled = !state.meta.writable;
    }
  }

  // -- dead letters ----------------------------------------------------------------------

  function fmtBytes(n) {
    return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
  }

  function sayDead(text, ok) {
    const message = $("#dead-letters-message");
    message.className = `message ${ok ? "ok" : "error"}`;
    message.textContent = text;
  }

  // ids: one task's dead letter, or null for every one.
  async function workDeadLetters(action, ids) {
    const body = ids === null ? { all: true } : { ids };
    try {
      const answer = await api("POST", `api/dead-letters/${action}`, body);
      if (action === "requeue") {
        const skipped = answer.skipped.length ? ` (${answer.skipped.length} cannot be requeued)` : "";
        sayDead(answer.requeued.length
          ? `Requeued ${answer.requeued.length}: ${answer.requeued.join(", ")}${skipped}.`
          : `Nothing could be requeued${skipped}.`, true);
      } else {
        sayDead(`Purged ${answer.purged}.`, true);
      }
    } catch (error) {
      sayDead(error.message, false);
    }
    await refresh();
  }

  function renderDeadLetters(items) {
    const rows = items.map((d) => {
      const name = d.id ?? "";
      const message = d.args === null && d.kwargs === null
        ? el("span", { class: "muted" }, d.truncated ? "cut to the broker's size bound" : "cannot be read")
        : el("pre", { class: "payload" }, [
          `args: ${JSON.stringify(d.args)}`,
          `kwargs: ${JSON.stringify(d.kwargs)}`,
          d.headers && Object.keys(d.headers).length ? `headers: ${JSON.stringify(d.headers)}` : null,
          `priority: ${d.priority}, attempt: ${d.attempt}`,
        ].filter(Boolean).join("\n"));
      const requeue = el("button", { type: "button", class: "primary", "data-action": "requeue",
        disabled: !d.requeueable || !d.id,
        title: d.requeueable ? null : "cut to the broker's size bound, or unreadable: purge it",
        onclick: () => workDeadLetters("requeue", [name]) }, "Requeue");
      const purge = el("button", { type: "button", class: "danger", "data-action": "purge", disabled: !d.id,
        onclick: () => {
          if (confirm(`Purge the dead letter of ${d.task_name ?? "?"} (${name})? It cannot be undone.`)) {
            workDeadLetters("purge", [name]);
          }
        } }, "Purge");
      return el("tr", { "data-id": name },
        el("td", {}, el("div", {}, el("strong", {}, d.task_name ?? "?")), el("div", { class: "mono muted" }, name)),
        el("td", { class: "mono reason" }, d.reason ?? ""),
        el("td", {}, fmtTime(d.at)),
        el("td", { class: "size" }, fmtBytes(d.size), d.truncated ? el("div", { class: "status failed" }, "truncated") : null),
        el("td", {}, message),
        el("td", {}, el("div", { class: "actions" }, requeue, purge)));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No dead letters.")));
    $("#dead-letters-table tbody").replaceChildren(...rows);
    $("#dead-requeue-all").disabled = !items.some((d) => d.requeueable);
    $("#dead-purge-all").disabled = !items.length;
  }

  // -- start -----------------------------------------------------------------------------

  // A mount that lets this visitor see nothing (private, or not signed in): say why and how
  // to change it, and do not keep asking.
  function showLocked(error) {
    const isPrivate = error.data.access === "private";
    $("#locked-title").textContent = isPrivate
      ? "This monitoring UI is private"
      : "You may not see this monitoring UI";
    $("#locked-message").textContent = error.message.charAt(0).toUpperCase() + error.message.slice(1);
    $("#locked").hidden = false;
    document.body.classList.add("locked");
    for (const name of VIEWS) $(`#view-${name}`).hidden = true;
    const pill = $("#live");
    pill.className = "pill locked";
    pill.textContent = isPrivate ? "Private" : "No access";
  }

  function applyMeta() {
    const notice = $("#notice-readonly");
    notice.hidden = state.meta.writable;
    notice.textContent = state.meta.writable ? "" : state.meta.hint;
    const form = $("#schedule-form");
    for (const control of form.elements) control.disabled = !state.meta.writable;
  }

  async function start() {
    $("#detail-close").addEventListener("click", () => $("#detail").close());
    $("#detail").addEventListener("close", () => {
      state.detail = null;
      linkTask(null);
    });
    $("#filters").addEventListener("change", () => {
      firstPage();
      refresh();
    });
    $("#filters").addEventListener("submit", (event) => {
      event.preventDefault(); // Enter in the id search
      firstPage();
      refresh();
    });
    $("#prev").addEventListener("click", () => {
      const page = state.back.pop();
      if (!page) return;
      state.cursor = page.cursor;
      state.before = page.before;
      refresh();
    });
    $("#next").addEventListener("click", () => {
      if (!state.next) return;
      state.back.push({ cursor: state.cursor, before: state.before });
      state.before += state.shown;
      state.cursor = state.next;
      refresh();
    });
    $("#schedule-form").addEventListener("submit", createSchedule);
    $("#schedule-form").kind.addEventListener("change", showKindFields);
    $("#dead-requeue-all").addEventListener("click", () => workDeadLetters("requeue", null));
    $("#dead-purge-all").addEventListener("click", () => {
      if (confirm("Purge every dead letter? It cannot be undone.")) workDeadLetters("purge", null);
    });
    try {
      [state.meta, state.tasks] = await Promise.all([api("GET", "api/meta"), api("GET", "api/tasks")]);
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        showLocked(error);
        return;
      }
      showError(error);
    }
    applyMeta();
    fillTaskChoices();
    window.addEventListener("hashchange", showView);
    showView();
    const linked = new URLSearchParams(location.search).get("task");
    if (linked) openDetail(linked);
    connectLive();
    setInterval(() => {
      if (!document.hidden) refresh();
    }, POLL_SECONDS * 1000);
  }

  start();
})();
