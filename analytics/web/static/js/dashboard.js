/* The dashboard: reads only the stats API (/api/v1/...), sums plats per game/area, draws Chart.js charts.
   Views: overview, retention heatmap, monetization, funnel; today's figures pushed by /api/v1/live (SSE),
   polling /api/v1/today when the stream fails. */
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const charts = {};
  let games = [];
  let generation = 0;
  const RET = ["1", "2", "3", "4", "5", "6", "7", "14", "30"];
  const COLORS = ["#3b6fe0", "#f2994a", "#27ae60", "#9b51e0", "#eb5757", "#2d9cdb", "#f2c94c", "#6fcf97"];
  const VIEWS = ["overview", "retention", "monetization", "funnel"];
  const LTV = ["1", "7", "14", "30"];
  let view = "overview";
  /* game -> the last day with logins in the store: retention after it is not known yet */
  const lastDataDay = {};

  function nextDay(s) {
    const [y, m, d] = s.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, d + 1)).toISOString().slice(0, 10);
  }
  function addDays(s, n) {
    const [y, m, d] = s.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
  }
  function tzOf(game) { const g = games.find((x) => x.game === game); return g ? g.tz : "UTC"; }
  function dayOf(ts, tz) {
    return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" })
      .format(new Date(ts * 1000));
  }
  const fmt = (n) => (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 2 });
  /* Money always with two decimals (46.00 next to 27.75, not 46). */
  const money = (n) => (n === null || n === undefined) ? "–" :
    Number(n).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  function currencyOf(game) { const g = games.find((x) => x.game === game); return (g && g.currency) || ""; }
  /* Every day from `from` to `to`: the shared x axis of the daily charts. */
  function daysBetween(from, to) {
    const out = [];
    for (let d = from; d && to && d <= to && out.length < 1000; d = nextDay(d)) out.push(d);
    return out;
  }
  /* The values of `field` of a Map day -> figures on `days` (`missing` where a day has none). */
  const onDays = (days, byDay, field, missing) => days.map((d) => (byDay.has(d) ? byDay.get(d)[field] : missing));
  /* Rates always with two decimals, as the API gives them (28.40%, not 28.4% next to 28.79%). */
  const pct = (n) => (n === null || n === undefined) ? "" :
    Number(n).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) + "%";
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

  /* The selected areas ([] = every area of the game). */
  function areas() {
    return [...$("area").selectedOptions].map((o) => o.value).filter((v) => v !== "");
  }
  /* /api/v1/stats takes one area: a selection is one request per area, concatenated. */
  async function statsOf(collection, params) {
    const sel = areas();
    params = { ...params, plat: $("plat").value };
    if (sel.length <= 1) return stats(collection, { ...params, area: sel[0] || "" });
    const parts = await Promise.all(sel.map((a) => stats(collection, { ...params, area: a })));
    return parts.flat();
  }

  async function api(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const r = await fetch(path + (q.toString() ? "?" + q : ""), { headers: { Accept: "application/json" } });
    /* the read key in the cookie was dropped or revoked: the page asks for one again */
    if (r.status === 401) { location.reload(); throw new Error("a read key is needed"); }
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }
  const stats = (collection, params) => api("/api/v1/stats/" + collection, params).then((b) => b.docs);

  /* Sum numeric fields of docs by a key function (plats and areas are summed). */
  function sumBy(docs, keyFn, fields) {
    const out = new Map();
    for (const d of docs) {
      const k = keyFn(d);
      const acc = out.get(k) || Object.fromEntries(fields.map((f) => [f, 0]));
      for (const f of fields) acc[f] += Number(d[f] || 0);
      out.set(k, acc);
    }
    return new Map([...out.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
  }
  const total = (docs, f) => docs.reduce((s, d) => s + Number(d[f] || 0), 0);
  function latest(docs, field, before) {
    const byTs = sumBy(docs.filter((d) => d.ts < before), (d) => d.ts, [field]);
    const keys = [...byTs.keys()];
    return keys.length ? byTs.get(keys[keys.length - 1])[field] : 0;
  }

  function draw(id, config) {
    if (charts[id]) charts[id].destroy();
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false,
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } } }, config.options || {});
    charts[id] = new Chart($(id), config);
  }
  function series(label, data, i, extra) {
    return Object.assign({ label, data, backgroundColor: COLORS[i % COLORS.length], borderColor: COLORS[i % COLORS.length],
      borderWidth: 2, pointRadius: 2, tension: 0 }, extra || {});  /* straight: a curve overshoots between points */
  }

  function fillSelectors(sel) {
    $("game").innerHTML = games.map((g) => `<option value="${g.game}">${g.game}</option>`).join("");
    if (sel.game) $("game").value = sel.game;
    fillAreas(sel.area);
  }
  function fillAreas(area) {
    const g = games.find((x) => x.game === $("game").value);
    const known = g ? g.areas : [];
    const wanted = (area || "").split(",").filter((a) => known.includes(a));
    /* servers by their name (the logs' server_name), the id on hover and, shortened, beside a shared name */
    const names = (g && g.names) || {};
    const counts = {};
    for (const a of known) if (names[a]) counts[names[a]] = (counts[names[a]] || 0) + 1;
    const label = (a) => !names[a] ? a : counts[names[a]] > 1 ? `${names[a]} · ${a.slice(-6)}` : names[a];
    $("area").innerHTML = `<option value="">All servers</option>` + known.map((a) =>
      `<option value="${esc(a)}" title="${esc(a)}">${esc(label(a))}</option>`).join("");
    for (const o of $("area").options) o.selected = wanted.length ? wanted.includes(o.value) : o.value === "";
  }

  /* The platforms of a game (from its loginday documents): the platform picker. */
  function fillPlats(docs, plat) {
    const plats = [...new Set(docs.map((d) => String(d.plat)))].sort();
    $("plat").innerHTML = `<option value="">All platforms</option>` + plats.map((p) => `<option value="${esc(p)}">${esc(p)}</option>`).join("");
    $("plat").value = plats.includes(plat) ? plat : "";
  }
  async function defaultRange(game, plat) {
    const docs = await stats("loginday", { game });
    fillPlats(docs, plat || "");
    const tz = tzOf(game);
    const last = docs.length ? dayOf(Math.max(...docs.map((d) => d.ts)), tz) : dayOf(Date.now() / 1000, tz);
    if (docs.length) lastDataDay[game] = last;
    return { from: addDays(last, -29), to: last };
  }

  async function render() {
    const gen = ++generation;
    document.body.dataset.ready = "0";
    const game = $("game").value, sel = areas(), from = $("from").value, to = $("to").value, plat = $("plat").value;
    const area = sel.join(",");
    const tz = tzOf(game);
    const params = new URLSearchParams({ game, area, from, to });
    if (plat) params.set("plat", plat);
    const cur = currencyOf(game);
    for (const e of document.querySelectorAll(".currency")) e.textContent = cur ? `(${cur})` : "";
    /* today's strip only when the range reaches today: on a historical range it would show zeros */
    $("today").hidden = !(to && to >= dayOf(Date.now() / 1000, tz));
    if (view !== "overview") params.set("view", view);
    if (liveMode === "poll") params.set("live", "poll");
    history.replaceState(null, "", "?" + params);
    for (const v of VIEWS) {
      $("view-" + v).hidden = v !== view;
      $("tab-" + v).classList.toggle("active", v === view);
    }
    $("status").className = "status";
    $("status").textContent = `Loading ${game}${area ? " / " + area : ""} ${from} … ${to}`;
    const ctx = { gen, game, area, tz, from, to, cur, days: daysBetween(from, to),
      range: { game, area, plat, from, to: to ? nextDay(to) : "" } };
    try {
      const done = await { overview: renderOverview, retention: renderHeatmap, monetization: renderMonetization,
        funnel: renderFunnel }[view](ctx);
      if (done === false || gen !== generation) return;
      $("status").textContent = `${game}${area ? " / " + area : " (all servers)"} · ${from} to ${to} · times in ${tz}`;
    } catch (err) {
      if (gen !== generation) return;
      $("status").className = "status error";
      $("status").textContent = "Could not load the stats: " + err.message;
    }
    document.body.dataset.ready = "1";
  }

  async function renderOverview({ gen, game, tz, from, range, days, cur }) {
    const base = { game };
    range = { game, from: range.from, to: range.to };
    const wide = { ...base, from: addDays(from, -31), to: range.to };
    const [activeday, activeweek, activemonth, signup, createrole, pay, coin, cointype, level, retention] =
      await Promise.all([statsOf("activeday", range), statsOf("activeweek", wide), statsOf("activemonth", wide),
        statsOf("signupday", range), statsOf("createroleday", range), statsOf("payorderuser", range),
        statsOf("coinday", range), statsOf("cointype", range), statsOf("userlevel", base), statsOf("loginretention", range)]);
    if (gen !== generation) return false;
    const end = Infinity;  /* the latest day/week/month that starts before `to` */
    $("kpi-dau").textContent = fmt(latest(activeday, "ac_user", end));
    $("kpi-wau").textContent = fmt(latest(activeweek, "ac_user", end));
    $("kpi-mau").textContent = fmt(latest(activemonth, "ac_user", end));
    $("kpi-new").textContent = fmt(total(activeday, "new_ac_user"));
    $("kpi-signup").textContent = fmt(total(signup, "count"));
    $("kpi-createrole").textContent = fmt(total(createrole, "count"));
    $("kpi-payers").textContent = fmt(total(pay, "count"));
    $("kpi-revenue").textContent = money(total(pay, "pay_amount"));

    const day = (d) => dayOf(d.ts, tz);
    const act = sumBy(activeday, day, ["ac_user", "new_ac_user", "old_ac_user"]);
    draw("chart-active", { type: "bar", data: { labels: days, datasets: [
      series("DAU", onDays(days, act, "ac_user", 0), 0, { type: "line" }),
      series("new", onDays(days, act, "new_ac_user", 0), 2, { stack: "u" }),
      series("returning", onDays(days, act, "old_ac_user", 0), 1, { stack: "u" })] },
      options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } } });

    const su = sumBy([...signup.map((d) => ({ ts: d.ts, s: d.count })), ...createrole.map((d) => ({ ts: d.ts, c: d.count }))], day, ["s", "c"]);
    draw("chart-signup", { type: "line", data: { labels: days, datasets: [
      series("sign-ups", onDays(days, su, "s", 0), 0), series("role creations", onDays(days, su, "c", 0), 3)] },
      options: { scales: { y: { beginAtZero: true } } } });

    const p = sumBy(pay, day, ["count", "pay_amount"]);
    draw("chart-pay", { type: "bar", data: { labels: days, datasets: [
      series(cur ? `revenue (${cur})` : "revenue", onDays(days, p, "pay_amount", 0), 2, { yAxisID: "y" }),
      series("paying users", onDays(days, p, "count", 0), 4, { type: "line", yAxisID: "y1" })] },
      options: { scales: { y: { beginAtZero: true, position: "left" }, y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } } } } });

    const c = sumBy(coin, day, ["consumed", "gained"]);
    draw("chart-coin", { type: "line", data: { labels: days, datasets: [
      series("consumed", onDays(days, c, "consumed", 0), 4), series("gained", onDays(days, c, "gained", 0), 2)] },
      options: { scales: { y: { beginAtZero: true } } } });

    const ct = sumBy(cointype, (d) => d.type, ["consumed", "gained"]);
    const types = [...ct.entries()].sort((a, b) => b[1].consumed - a[1].consumed).slice(0, 12);
    draw("chart-cointype", { type: "bar", data: { labels: types.map((t) => t[0]), datasets: [
      series("consumed", types.map((t) => t[1].consumed), 5), series("gained", types.map((t) => t[1].gained), 6)] },
      options: { indexAxis: "y" } });

    const lv = [...sumBy(level, (d) => Number(d.grade), ["count"]).entries()].sort((a, b) => a[0] - b[0]);
    draw("chart-level", { type: "bar", data: { labels: lv.map((l) => "Lv " + l[0]), datasets: [
      series("users", lv.map((l) => l[1].count), 0)] }, options: { plugins: { legend: { display: false } } } });

    /* the last day with data: a cohort's D+k after it is not known yet (blank, not 0 %) */
    const known = [...act.keys()];
    renderRetention(sumBy(retention, day, ["cohort", ...RET.map((k) => "d" + k)]),
      lastDataDay[game] || (known.length ? known[known.length - 1] : ""));
  }

  /* A sequential colour for a share of the table's largest share: light blue to deep blue. */
  function heat(share) {
    const t = Math.max(0, Math.min(1, share));
    const from = [238, 243, 253], to = [29, 63, 160];
    const c = from.map((f, i) => Math.round(f + (to[i] - f) * t));
    return { bg: `rgb(${c.join(",")})`, ink: t > 0.55 ? "#fff" : "#1d2433" };
  }

  async function renderHeatmap({ gen, range }) {
    const data = await api("/api/v1/cohorts", range);
    if (gen !== generation) return false;
    const t = $("heatmap"), offsets = data.offsets;
    t.tHead.innerHTML = "<tr><th>cohort day</th><th>users</th>" + offsets.map((k) => `<th>D${k}</th>`).join("") + "</tr>";
    /* the scale's top: the 95th percentile of the shown rates, so that one tiny cohort does not wash out the rest */
    const rates = data.rows.flatMap((r) => offsets.map((k) => r["d" + k + "_rate"])).filter((v) => v !== null).sort((a, b) => a - b);
    const top = Math.max(1, rates.length ? rates[Math.floor(0.95 * (rates.length - 1))] : 1);
    $("heatmap-legend").innerHTML = `<span class="swatch" style="background:${heat(0).bg}"></span>0% … ` +
      `<span class="swatch" style="background:${heat(1).bg}"></span>${fmt(top)}% and above`;
    const cell = (n, r, whole) => {
      if (r === null || r === undefined) return `<td class="na" title="not yet"></td>`;
      const h = heat(r / top);
      return `<td class="cell" data-count="${n}" title="${fmt(n)} of ${fmt(whole)} users" style="background:${h.bg};color:${h.ink}">${pct(r)}</td>`;
    };
    t.tBodies[0].innerHTML = data.rows.length ? data.rows.map((r) =>
      `<tr data-day="${r.day}"><td>${r.day}</td><td>${fmt(r.cohort)}</td>${offsets.map((k) => cell(r["d" + k], r["d" + k + "_rate"], r.cohort)).join("")}</tr>`).join("")
      : `<tr><td colspan="${offsets.length + 2}" class="empty">no cohorts in this range</td></tr>`;
    const tot = data.total;
    t.tFoot.innerHTML = data.rows.length ? `<tr><th>all cohorts</th><th>${fmt(tot.cohort)}</th>` +
      offsets.map((k) => tot["d" + k + "_rate"] === null ? "<th></th>" :
        `<th title="${fmt(tot["d" + k])} of ${fmt(tot["d" + k + "_cohort"])} users">${pct(tot["d" + k + "_rate"])}</th>`).join("") + "</tr>" : "";
  }

  async function renderMonetization({ gen, range, days, cur }) {
    const data = await api("/api/v1/monetization", range);
    if (gen !== generation) return false;
    const labels = days, byDay = new Map(data.days.map((d) => [d.day, d]));
    draw("chart-arpu", { type: "line", data: { labels, datasets: [
      series("ARPU", onDays(days, byDay, "arpu", null), 0), series("ARPPU", onDays(days, byDay, "arppu", null), 1, { yAxisID: "y1" })] },
      options: { scales: { y: { beginAtZero: true, position: "left", title: { display: true, text: "ARPU" } },
        y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "ARPPU" } } } } });
    draw("chart-payrate", { type: "bar", data: { labels, datasets: [
      series("paying rate %", onDays(days, byDay, "paying_rate", null), 4, { type: "line", yAxisID: "y1" }),
      series("first-time payers", onDays(days, byDay, "first_time_payers", 0), 2)] },
      options: { scales: { y: { beginAtZero: true }, y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } } } } });
    const cols = [["day", "day"], ["active", "active users"], ["payers", "payers"], ["takings", "takings"], ["arpu", "ARPU"],
      ["arppu", "ARPPU"], ["paying_rate", "paying rate"], ["first_time_payers", "first-time payers"]];
    const t = $("monetization");
    t.tHead.innerHTML = "<tr>" + cols.map((c) => `<th>${c[1]}</th>`).join("") + "</tr>";
    const MONEY = new Set(["takings", "arpu", "arppu"]);
    const show = (f, v) => f === "day" ? v : f === "paying_rate" ? pct(v) : MONEY.has(f) ? money(v) : fmt(v);
    t.tBodies[0].innerHTML = data.days.length ? data.days.map((d) =>
      `<tr data-day="${d.day}">` + cols.map(([f]) => `<td data-field="${f}">${show(f, d[f])}</td>`).join("") + "</tr>").join("")
      : `<tr><td colspan="${cols.length}" class="empty">no payments or logins in this range</td></tr>`;
    const sum = (f) => data.days.reduce((s, d) => s + d[f], 0);
    const active = sum("active"), payers = sum("payers"), takings = sum("takings");
    t.tFoot.innerHTML = data.days.length ? `<tr><th>range</th><th>${fmt(active)}</th><th>${fmt(payers)}</th><th>${money(takings)}</th>` +
      `<th title="takings / active user-days">${money(active ? takings / active : 0)}</th><th title="takings / payer-days">${money(payers ? takings / payers : 0)}</th>` +
      `<th>${pct(active ? 100 * payers / active : 0)}</th><th>${fmt(sum("first_time_payers"))}</th></tr>` : "";

    const lt = $("ltv");
    lt.tHead.innerHTML = "<tr><th>cohort day</th><th>users</th>" + LTV.map((k) => `<th>LTV D${k}</th>`).join("") + "</tr>";
    lt.tBodies[0].innerHTML = data.ltv.length ? data.ltv.map((r) => `<tr data-day="${r.day}"><td>${r.day}</td><td>${fmt(r.cohort)}</td>` +
      LTV.map((k) => r["ltv_d" + k] === null ? `<td class="na" title="not yet"></td>` :
        `<td data-field="ltv_d${k}" title="${money(r["amount_d" + k])} paid by ${fmt(r["payers_d" + k])} of ${fmt(r.cohort)} users">${money(r["ltv_d" + k])}</td>`).join("") + "</tr>").join("")
      : `<tr><td colspan="${LTV.length + 2}" class="empty">no cohorts in this range</td></tr>`;
    const ltvByDay = new Map(data.ltv.map((r) => [r.day, r]));  /* a cohort not yet at D+k is a gap, not 0 */
    draw("chart-ltv", { type: "line", data: { labels: days, datasets:
      LTV.map((k, i) => series("D" + k, onDays(days, ltvByDay, "ltv_d" + k, null), i, { spanGaps: false })) },
      options: { scales: { y: { beginAtZero: true } } } });
  }

  const STEP_NAMES = { signup: "signed up", role: "created a role", next_day_login: "logged in the next day", first_payment: "paid (30 days)" };
  async function renderFunnel({ gen, range }) {
    const data = await api("/api/v1/funnel", range);
    if (gen !== generation) return false;
    const steps = data.steps, tot = data.total;
    const rateOf = (i) => i === 0 ? null : tot[steps[i] + "_rate"];
    draw("chart-funnel", { type: "bar", data: { labels: steps.map((s) => STEP_NAMES[s]), datasets: [
      series("users", steps.map((s) => tot[s]), 0, { backgroundColor: steps.map((_, i) => COLORS[i]) })] },
      options: { indexAxis: "y", plugins: { legend: { display: false }, tooltip: { callbacks: {
        afterLabel: (c) => c.dataIndex ? `${fmt(rateOf(c.dataIndex))}% of the step before` : "" } } },
        scales: { x: { beginAtZero: true } } } });
    $("funnel-total").tBodies[0].innerHTML = steps.map((s, i) => `<tr><th>${STEP_NAMES[s]}</th><td data-field="${s}">${fmt(tot[s])}</td>` +
      `<td data-field="${s}_rate">${i ? pct(tot[s + "_rate"]) : ""}</td></tr>`).join("") +
      `<tr><th>sign-up to payment</th><td></td><td data-field="overall_rate">${pct(tot.overall_rate)}</td></tr>`;
    const t = $("funnel");
    t.tHead.innerHTML = "<tr><th>sign-up day</th>" + steps.map((s, i) => `<th>${STEP_NAMES[s]}</th>` + (i ? "<th>%</th>" : "")).join("") + "<th>overall</th></tr>";
    t.tBodies[0].innerHTML = data.rows.length ? data.rows.map((r) => `<tr data-day="${r.day}"><td>${r.day}</td>` +
      steps.map((s, i) => `<td data-field="${s}">${r[s] === null ? "" : fmt(r[s])}</td>` + (i ? `<td data-field="${s}_rate">${pct(r[s + "_rate"])}</td>` : "")).join("") +
      `<td data-field="overall_rate">${pct(r.overall_rate)}</td></tr>`).join("")
      : `<tr><td colspan="${2 * steps.length + 1}" class="empty">no sign-ups in this range</td></tr>`;
  }

  /* -- today, live: Server-Sent Events, polling as the fallback ------------------------------------ */
  let liveMode = "sse", source = null, pollTimer = null, retryTimer = null, liveKey = "";
  /* Every update shown (for the browser test and bench/bench_live.py): {seq, shown (epoch ms), via, figures}. */
  window.__live = [];
  function showToday(snap, via) {
    $("live-day").textContent = snap.day;
    $("live-active").textContent = fmt(snap.active);
    $("live-signup").textContent = fmt(snap.signup);
    $("live-role").textContent = fmt(snap.role);
    $("live-payers").textContent = fmt(snap.payers);
    $("live-takings").textContent = money(snap.takings);
    $("live-arpu").textContent = money(snap.arpu);
    $("live-paying-rate").textContent = pct(snap.paying_rate);
    const at = new Date().toLocaleTimeString("en-GB");
    $("live-status").textContent = via === "sse" ? `live · updated ${at}` : `polling every 2 s · updated ${at}`;
    $("live-status").className = "live-status " + via;
    requestAnimationFrame(() => window.__live.push({ seq: snap.seq, shown: Date.now(), via, ...snap }));
  }
  function liveParams() { return { game: $("game").value, area: areas().join(","), plat: $("plat").value }; }
  function stopLive() {
    if (source) { source.close(); source = null; }
    clearInterval(pollTimer); pollTimer = null;
    clearTimeout(retryTimer); retryTimer = null;
  }
  function poll() {
    const key = liveKey;
    const once = () => api("/api/v1/today", liveParams()).then((s) => { if (key === liveKey) showToday(s, "poll"); })
      .catch((e) => { $("live-status").textContent = "today's figures unavailable: " + e.message; });
    once();
    pollTimer = setInterval(once, 2000);
  }
  function startLive() {
    stopLive();
    const p = liveParams();
    liveKey = JSON.stringify(p);
    if (!p.game) return;
    if (liveMode === "poll" || !window.EventSource) { poll(); return; }
    const q = new URLSearchParams(Object.entries(p).filter(([, v]) => v));
    source = new EventSource("/api/v1/live?" + q);
    let opened = false;
    source.addEventListener("today", (e) => { opened = true; showToday(JSON.parse(e.data), "sse"); });
    source.onerror = () => {
      if (source && source.readyState === EventSource.OPEN) return;
      /* the stream failed (or never opened): poll, and try the stream again in 30 s */
      stopLive();
      poll();
      $("live-status").textContent = opened ? "stream lost: polling every 2 s" : "no stream: polling every 2 s";
      retryTimer = setTimeout(() => { if (liveMode === "sse") startLive(); }, 30000);
    };
  }

  function renderRetention(rows, lastDay) {
    const t = $("retention");
    t.tHead.innerHTML = "<tr><th>cohort day</th><th>new roles</th>" + RET.map((k) => `<th>D${k}</th>`).join("") + "</tr>";
    if (!rows.size) { t.tBodies[0].innerHTML = `<tr><td colspan="${RET.length + 2}" class="empty">no cohorts in this range</td></tr>`; return; }
    t.tBodies[0].innerHTML = [...rows.entries()].map(([d, v]) => {
      const cells = RET.map((k) => {
        if (!v.cohort || (lastDay && addDays(d, Number(k)) > lastDay)) return `<td class="na" title="not yet"></td>`;
        const share = (100 * v["d" + k]) / v.cohort;
        const bg = `rgba(59,111,224,${(share / 100 * 0.85 + 0.03).toFixed(3)})`;
        return `<td style="background:${bg};color:${share > 55 ? "#fff" : "inherit"}" title="${v["d" + k]} users">${pct(Math.round(100 * share) / 100)}</td>`;
      }).join("");
      return `<tr><td>${d}</td><td>${fmt(v.cohort)}</td>${cells}</tr>`;
    }).join("");
  }

  /* -- CSV export of the tables the current view shows ------------------------------------------ */
  const csvCell = (s) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  function viewCSV() {
    const out = [];
    for (const t of document.querySelectorAll(`#view-${view} table`)) {
      const head = t.closest("section, figure");
      const title = head && head.querySelector("h2, figcaption");
      if (out.length) out.push("");
      if (title) out.push(csvCell(title.textContent.trim()));
      for (const tr of t.querySelectorAll("tr")) out.push([...tr.cells].map((c) => csvCell(c.textContent.trim())).join(","));
    }
    return out.join("\n") + "\n";
  }
  window.__csv = viewCSV;
  function downloadCSV() {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([viewCSV()], { type: "text/csv" }));
    a.download = `${$("game").value}-${view}-${$("from").value}-${$("to").value}.csv`;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 0);
  }

  async function start() {
    const url = new URLSearchParams(location.search);
    view = VIEWS.includes(url.get("view")) ? url.get("view") : "overview";
    liveMode = url.get("live") === "poll" ? "poll" : "sse";
    try {
      games = (await api("/api/v1/games")).games;
    } catch (err) {
      $("status").className = "status error"; $("status").textContent = "Could not load the games: " + err.message;
      document.body.dataset.ready = "1"; return;
    }
    if (!games.length) { $("status").textContent = "No data yet: the store has no game servers."; document.body.dataset.ready = "1"; return; }
    fillSelectors({ game: url.get("game"), area: url.get("area") });
    let from = url.get("from"), to = url.get("to");
    const range = await defaultRange($("game").value, url.get("plat") || "");
    if (!from || !to) ({ from, to } = range);
    $("from").value = from; $("to").value = to;
    $("game").addEventListener("change", async () => { fillAreas(""); const r = await defaultRange($("game").value); $("from").value = r.from; $("to").value = r.to; startLive(); render(); });
    $("area").addEventListener("change", () => {
      const all = $("area").options[0];
      if (all.selected && areas().length) all.selected = false;   /* a selection replaces "All servers" */
      if (!areas().length) all.selected = true;
      startLive(); render();
    });
    $("plat").addEventListener("change", () => { startLive(); render(); });
    $("csv").addEventListener("click", downloadCSV);
    $("from").addEventListener("change", render);
    $("to").addEventListener("change", render);
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); render(); });
    for (const a of document.querySelectorAll("#views a")) {
      a.addEventListener("click", (e) => { e.preventDefault(); view = a.dataset.view; render(); });
    }
    startLive();
    render();
  }
  start();
})();
