/* The dashboard: reads only the stats API (/api/v1/...), sums plats per game/area, draws Chart.js charts. */
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const charts = {};
  let games = [];
  let generation = 0;
  const RET = ["1", "2", "3", "4", "5", "6", "7", "14", "30"];
  const COLORS = ["#3b6fe0", "#f2994a", "#27ae60", "#9b51e0", "#eb5757", "#2d9cdb", "#f2c94c", "#6fcf97"];

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

  async function api(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const r = await fetch(path + (q.toString() ? "?" + q : ""), { headers: { Accept: "application/json" } });
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
      borderWidth: 2, pointRadius: 2, tension: 0.25, cubicInterpolationMode: "monotone" }, extra || {});
  }

  function fillSelectors(sel) {
    $("game").innerHTML = games.map((g) => `<option value="${g.game}">${g.game}</option>`).join("");
    if (sel.game) $("game").value = sel.game;
    fillAreas(sel.area);
  }
  function fillAreas(area) {
    const g = games.find((x) => x.game === $("game").value);
    const areas = g ? g.areas : [];
    $("area").innerHTML = `<option value="">All areas</option>` + areas.map((a) => `<option value="${a}">${a}</option>`).join("");
    $("area").value = area && areas.includes(area) ? area : "";
  }

  async function defaultRange(game) {
    const docs = await stats("loginday", { game });
    const tz = tzOf(game);
    const last = docs.length ? dayOf(Math.max(...docs.map((d) => d.ts)), tz) : dayOf(Date.now() / 1000, tz);
    return { from: addDays(last, -29), to: last };
  }

  async function render() {
    const gen = ++generation;
    document.body.dataset.ready = "0";
    const game = $("game").value, area = $("area").value, from = $("from").value, to = $("to").value;
    const tz = tzOf(game);
    const base = { game, area };
    const range = { ...base, from, to: to ? nextDay(to) : "" };
    const params = new URLSearchParams({ game, area, from, to });
    history.replaceState(null, "", "?" + params);
    $("status").className = "status";
    $("status").textContent = `Loading ${game}${area ? " / " + area : ""} ${from} … ${to}`;
    try {
      const wide = { ...base, from: addDays(from, -31), to: range.to };
      const [activeday, activeweek, activemonth, signup, createrole, pay, coin, cointype, level, retention] =
        await Promise.all([stats("activeday", range), stats("activeweek", wide), stats("activemonth", wide),
          stats("signupday", range), stats("createroleday", range), stats("payorderuser", range),
          stats("coinday", range), stats("cointype", range), stats("userlevel", base), stats("loginretention", range)]);
      if (gen !== generation) return;
      const end = Infinity;  /* the latest day/week/month that starts before `to` */
      $("kpi-dau").textContent = fmt(latest(activeday, "ac_user", end));
      $("kpi-wau").textContent = fmt(latest(activeweek, "ac_user", end));
      $("kpi-mau").textContent = fmt(latest(activemonth, "ac_user", end));
      $("kpi-new").textContent = fmt(total(activeday, "new_ac_user"));
      $("kpi-signup").textContent = fmt(total(signup, "count"));
      $("kpi-createrole").textContent = fmt(total(createrole, "count"));
      $("kpi-payers").textContent = fmt(total(pay, "count"));
      $("kpi-revenue").textContent = fmt(total(pay, "pay_amount"));

      const day = (d) => dayOf(d.ts, tz);
      const act = sumBy(activeday, day, ["ac_user", "new_ac_user", "old_ac_user"]);
      draw("chart-active", { type: "bar", data: { labels: [...act.keys()], datasets: [
        series("DAU", [...act.values()].map((v) => v.ac_user), 0, { type: "line" }),
        series("new", [...act.values()].map((v) => v.new_ac_user), 2, { stack: "u" }),
        series("returning", [...act.values()].map((v) => v.old_ac_user), 1, { stack: "u" })] },
        options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } } });

      const su = sumBy([...signup.map((d) => ({ ts: d.ts, s: d.count })), ...createrole.map((d) => ({ ts: d.ts, c: d.count }))], day, ["s", "c"]);
      draw("chart-signup", { type: "line", data: { labels: [...su.keys()], datasets: [
        series("sign-ups", [...su.values()].map((v) => v.s), 0), series("role creations", [...su.values()].map((v) => v.c), 3)] },
        options: { scales: { y: { beginAtZero: true } } } });

      const p = sumBy(pay, day, ["count", "pay_amount"]);
      draw("chart-pay", { type: "bar", data: { labels: [...p.keys()], datasets: [
        series("revenue", [...p.values()].map((v) => v.pay_amount), 2, { yAxisID: "y" }),
        series("paying users", [...p.values()].map((v) => v.count), 4, { type: "line", yAxisID: "y1" })] },
        options: { scales: { y: { beginAtZero: true, position: "left" }, y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } } } } });

      const c = sumBy(coin, day, ["consumed", "gained"]);
      draw("chart-coin", { type: "line", data: { labels: [...c.keys()], datasets: [
        series("consumed", [...c.values()].map((v) => v.consumed), 4), series("gained", [...c.values()].map((v) => v.gained), 2)] },
        options: { scales: { y: { beginAtZero: true } } } });

      const ct = sumBy(cointype, (d) => d.type, ["consumed", "gained"]);
      const types = [...ct.entries()].sort((a, b) => b[1].consumed - a[1].consumed).slice(0, 12);
      draw("chart-cointype", { type: "bar", data: { labels: types.map((t) => t[0]), datasets: [
        series("consumed", types.map((t) => t[1].consumed), 5), series("gained", types.map((t) => t[1].gained), 6)] },
        options: { indexAxis: "y" } });

      const lv = [...sumBy(level, (d) => Number(d.grade), ["count"]).entries()].sort((a, b) => a[0] - b[0]);
      draw("chart-level", { type: "bar", data: { labels: lv.map((l) => "Lv " + l[0]), datasets: [
        series("users", lv.map((l) => l[1].count), 0)] }, options: { plugins: { legend: { display: false } } } });

      renderRetention(sumBy(retention, day, ["cohort", ...RET.map((k) => "d" + k)]));
      $("status").textContent = `${game}${area ? " / " + area : " (all areas)"} · ${from} to ${to} · times in ${tz}`;
    } catch (err) {
      if (gen !== generation) return;
      $("status").className = "status error";
      $("status").textContent = "Could not load the stats: " + err.message;
    }
    document.body.dataset.ready = "1";
  }

  function renderRetention(rows) {
    const t = $("retention");
    t.tHead.innerHTML = "<tr><th>cohort day</th><th>new roles</th>" + RET.map((k) => `<th>D${k}</th>`).join("") + "</tr>";
    if (!rows.size) { t.tBodies[0].innerHTML = `<tr><td colspan="${RET.length + 2}" class="empty">no cohorts in this range</td></tr>`; return; }
    t.tBodies[0].innerHTML = [...rows.entries()].map(([d, v]) => {
      const cells = RET.map((k) => {
        const pct = v.cohort ? (100 * v["d" + k]) / v.cohort : 0;
        const bg = `rgba(59,111,224,${(pct / 100 * 0.85 + 0.03).toFixed(3)})`;
        return `<td style="background:${bg};color:${pct > 55 ? "#fff" : "inherit"}" title="${v["d" + k]} users">${pct.toFixed(1)}%</td>`;
      }).join("");
      return `<tr><td>${d}</td><td>${fmt(v.cohort)}</td>${cells}</tr>`;
    }).join("");
  }

  async function start() {
    const url = new URLSearchParams(location.search);
    try {
      games = (await api("/api/v1/games")).games;
    } catch (err) {
      $("status").className = "status error"; $("status").textContent = "Could not load the games: " + err.message;
      document.body.dataset.ready = "1"; return;
    }
    if (!games.length) { $("status").textContent = "No data yet: the store has no game servers."; document.body.dataset.ready = "1"; return; }
    fillSelectors({ game: url.get("game"), area: url.get("area") });
    let from = url.get("from"), to = url.get("to");
    if (!from || !to) ({ from, to } = await defaultRange($("game").value));
    $("from").value = from; $("to").value = to;
    $("game").addEventListener("change", async () => { fillAreas(""); const r = await defaultRange($("game").value); $("from").value = r.from; $("to").value = r.to; render(); });
    $("area").addEventListener("change", render);
    $("from").addEventListener("change", render);
    $("to").addEventListener("change", render);
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); render(); });
    render();
  }
  start();
})();
