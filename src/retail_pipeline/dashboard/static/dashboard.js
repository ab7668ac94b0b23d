// The dashboard page: fetches /api/data for the chosen filters, fills the KPI tiles and tables,
// draws the charts with the vendored Vega-Lite, and polls so the numbers follow the warehouse.
"use strict";

const POLL_MS = 5000;
const SEGMENTS = {
  created_to_shipped: "created → shipped",
  shipped_to_delivered: "shipped → delivered",
  created_to_delivered: "created → delivered",
};
const form = document.getElementById("filters");
const views = {};
let currency = "USD";
let lastFigures = null;
let inFlight = false;
let renders = 0;
let restated = {};
let drills = 0;

const count = new Intl.NumberFormat("en-US");
// Money arrives as exact decimal text ("90071992547409.93"): Intl formats a numeric string
// exactly (no binary float on the way), and charts get Number() only to place their marks.
const MONEY_TEXT = /^-?\d+\.\d{2}$/;
function money(value) {
  const text = String(value);
  if (!MONEY_TEXT.test(text)) return "?";
  return new Intl.NumberFormat("en-US", { style: "currency", currency }).format(text);
}
function amount(value) {
  return Number(value);
}
function formatValue(value, kind) {
  if (value === null || value === undefined) return "–";
  switch (kind) {
    case "money": return money(value);
    case "percent": return (value * 100).toFixed(2) + "%";
    case "hours": return value.toFixed(1) + " h";
    case "text": return String(value);
    default: return count.format(value);
  }
}
function lookup(data, path) {
  return path.split(".").reduce((node, key) => (node == null ? undefined : node[key]), data);
}
function setValue(element, value) {
  element.dataset.value = value === undefined ? "" : JSON.stringify(value);
  element.textContent = value === undefined ? "–" : formatValue(value, element.dataset.format);
}

function query() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value) params.set(key, value);
  return params.toString();
}

function fillOptions(options) {
  for (const name of ["category", "country", "payment_method", "carrier"]) {
    const select = form.elements[name];
    const chosen = select.value;
    const wanted = ["", ...options[name]];
    const have = Array.from(select.options, (option) => option.value);
    if (wanted.join("\u0000") !== have.join("\u0000")) {
      select.replaceChildren(...wanted.map((value) => new Option(value || "All", value)));
    }
    select.value = wanted.includes(chosen) ? chosen : "";
  }
  for (const name of ["date_from", "date_to"]) {
    form.elements[name].min = options.date_min || "";
    form.elements[name].max = options.date_max || "";
  }
}

function showMeta(meta) {
  currency = meta.currency;
  for (const element of document.querySelectorAll(".currency")) element.textContent = `(${currency})`;
  const built = meta.gold_built_at ? meta.gold_built_at.replace("T", " ").replace("Z", " UTC") : "unknown";
  const taken = meta.snapshot_taken_at.replace("T", " ").replace("Z", " UTC");
  document.getElementById("meta").textContent =
    `${meta.source} · Gold built ${built} · read ${taken} · money in ${currency}, rounded to cents`;
  const warning = document.getElementById("warning");
  const lines = [meta.stale_warning, ...meta.notes].filter(Boolean);
  warning.hidden = lines.length === 0;
  warning.textContent = lines.join(" · ");
  restated = meta.restated || {};
  markRestated();
  const health = document.getElementById("health");
  health.textContent = meta.health && meta.health.line ? meta.health.line : "health unknown";
  health.dataset.status = (meta.health && meta.health.status) || "unknown";
}

function fillTables(figures) {
  const products = document.querySelector("#top-products tbody");
  products.replaceChildren(...figures.top_products.map((row, index) => {
    const tr = document.createElement("tr");
    tr.dataset.product = row.product_id;
    const cells = [
      [String(index + 1), null, null, ""],
      [row.product_name || row.product_id, `top_products.${index}.product_id`, row.product_id, ""],
      [row.category || "?", `top_products.${index}.category`, row.category, ""],
      [count.format(row.units), `top_products.${index}.units`, row.units, "num"],
      [money(row.revenue), `top_products.${index}.revenue`, row.revenue, "num"],
    ];
    for (const [text, path, value, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      if (path) { td.dataset.kpi = path; td.dataset.value = JSON.stringify(value); }
      tr.append(td);
    }
    return tr;
  }));
  const leads = document.querySelector("#lead-times tbody");
  leads.replaceChildren(...Object.entries(SEGMENTS).map(([segment, label]) => {
    const tr = document.createElement("tr");
    tr.dataset.segment = segment;
    const th = document.createElement("td");
    th.textContent = label;
    tr.append(th);
    for (const stat of ["count", "mean", "p50", "p90"]) {
      const td = document.createElement("td");
      td.className = "num";
      td.dataset.kpi = `lead_times_hours.${segment}.${stat}`;
      td.dataset.format = stat === "count" ? "count" : "hours";
      setValue(td, figures.lead_times_hours[segment][stat]);
      tr.append(td);
    }
    return tr;
  }));
}

function isRestated(grain, key) {
  return Array.isArray(restated[grain]) && restated[grain].includes(key);
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fillDaily(figures) {
  const orders = new Map(figures.orders_per_day.map((row) => [row.date, row.orders]));
  const converted = new Map(figures.conversion_rate.by_day.map((row) => [row.date, row.converted]));
  const revenue = new Map(figures.revenue.by_day.map((row) => [row.date, row]));
  const days = Array.from(new Set([...orders.keys(), ...revenue.keys()])).sort();
  const body = document.querySelector("#daily tbody");
  body.replaceChildren(...days.map((day) => {
    const tr = document.createElement("tr");
    tr.dataset.date = day;
    const money_ = revenue.get(day) || { gross: "0.00", refunds: "0.00", net: "0.00" };
    tr.append(
      cell(day),
      cell(count.format(orders.get(day) || 0), "num"),
      cell(converted.has(day) ? count.format(converted.get(day)) : "–", "num"),
      cell(money(money_.gross), "num"),
      cell(money(money_.refunds), "num"),
      cell(money(money_.net), "num"),
    );
    return tr;
  }));
  markRestated();
}

// Rows of figures a later build changed get a "restated" badge (the restatement ledger).
function markRestated() {
  const marks = [
    ["#daily tbody tr", (tr) => isRestated("order_date", tr.dataset.date) || isRestated("revenue_date", tr.dataset.date)],
    ["#top-products tbody tr", (tr) => isRestated("product", tr.dataset.product)],
    ["#lead-times tbody tr", (tr) => isRestated("segment", tr.dataset.segment)],
  ];
  for (const [selector, test] of marks) {
    for (const tr of document.querySelectorAll(selector)) {
      const on = Boolean(test(tr));
      tr.dataset.restated = String(on);
      const first = tr.firstElementChild;
      const badge = first && first.querySelector(".restated-badge");
      if (on && first && !badge) {
        const span = document.createElement("span");
        span.className = "restated-badge";
        span.textContent = "restated";
        first.append(span);
      } else if (!on && badge) {
        badge.remove();
      }
    }
  }
}

function when(iso) {
  return iso ? iso.replace("T", " ").replace(/(\.\d+)?(\+00:00|Z)$/, "") : "–";
}

function renderExplanation(result) {
  const part = document.createElement("article");
  const h3 = document.createElement("h3");
  h3.textContent = result.title;
  part.append(h3);
  const figures = document.createElement("ul");
  const late = new Set();
  for (const figure of result.figures) {
    const li = document.createElement("li");
    li.textContent = `${figure.figure}: published ${figure.published ?? "–"}; its ${count.format(figure.contributions)} counted events give ${figure.sum_of_contributions ?? "–"}: `;
    const verdict = document.createElement("span");
    verdict.className = figure.adds_up ? "adds-up" : "does-not-add-up";
    verdict.textContent = figure.adds_up ? "adds up" : "does not add up";
    li.append(verdict);
    const history = result.history[figure.figure] || [];
    const restatements = history.filter((row) => row.restatement);
    if (restatements.length) {
      const latest = restatements[restatements.length - 1];
      for (const load of latest.cause_loads) late.add(load);
      const items = document.createElement("ul");
      for (const row of restatements) {
        const item = document.createElement("li");
        item.className = "restatement";
        item.textContent = `restated ${when(row.recorded_at)} UTC from ${row.old ?? "–"} to ${row.new ?? "–"} (${row.delta ?? "–"}), loads ${row.cause_loads.join(", ") || "–"}`;
        items.append(item);
      }
      li.append(items);
    }
    figures.append(li);
  }
  part.append(figures);
  const table = document.createElement("table");
  const head = document.createElement("tr");
  for (const title of ["Order", "Event", "At (UTC)", "Counts in", "Amount", "Rule", "Bronze source", "Load", "Ingested (UTC)"]) {
    const th = document.createElement("th");
    th.textContent = title;
    head.append(th);
  }
  const thead = document.createElement("thead");
  thead.append(head);
  const body = document.createElement("tbody");
  for (const c of result.contributions) {
    for (const [index, source] of [c.source, ...c.duplicates].entries()) {
      const tr = document.createElement("tr");
      const isLate = Boolean(source && late.has(source.load_id) && index === 0);
      tr.dataset.late = String(isLate);
      tr.dataset.order = c.order_id;
      tr.dataset.rule = index === 0 ? c.rule : "duplicate";
      const first = cell(index === 0 ? c.order_id : "");
      if (isLate) {
        const badge = document.createElement("span");
        badge.className = "late-badge";
        badge.textContent = "late";
        first.append(badge);
      }
      tr.append(
        first,
        cell(`${c.event_type ?? "–"} ${c.event_id ?? ""}`),
        cell(index === 0 ? when(c.event_at) : ""),
        cell(index === 0 ? c.counted_in ?? "–" : ""),
        cell(index === 0 ? c.amount : "", "num"),
        cell(index === 0 ? c.why : source.why),
        cell(source ? source.where : "–"),
        cell(source ? source.load_id : "–"),
        cell(source ? when(source.ingested_at) : "–"),
      );
      body.append(tr);
    }
  }
  table.append(thead, body);
  part.append(table);
  const shown = document.createElement("p");
  shown.className = "detail";
  shown.textContent = `${count.format(result.listed)} listed${result.more ? `, ${count.format(result.more)} more (retail-pipeline explain --limit)` : ""}; ${count.format(result.not_counted)} not counted.`;
  part.append(shown);
  return part;
}

// Drill-through: explain --json of the published figures behind a row, from /api/explain.
async function drill(title, questions) {
  const panel = document.getElementById("drill");
  const body = document.getElementById("drill-body");
  const ticket = ++drills;
  document.getElementById("drill-title").textContent = title;
  body.replaceChildren();
  panel.hidden = false;
  document.body.dataset.drill = "loading";
  try {
    const parts = [];
    for (const params of questions) {
      const response = await fetch(`/api/explain?${new URLSearchParams(params)}`, { cache: "no-store" });
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || response.statusText);
      parts.push(renderExplanation(data));
    }
    if (ticket !== drills) return;
    body.replaceChildren(...parts);
    document.body.dataset.drill = "ready";
    document.body.dataset.drillTitle = title;
  } catch (error) {
    if (ticket !== drills) return;
    const p = document.createElement("p");
    p.className = "warning";
    p.textContent = `Cannot explain: ${error.message}`;
    body.replaceChildren(p);
    document.body.dataset.drill = "error";
  }
  panel.scrollIntoView({ block: "nearest" });
}

document.querySelector("#daily tbody").addEventListener("click", (event) => {
  const tr = event.target.closest("tr");
  if (!tr || !tr.dataset.date) return;
  const date = tr.dataset.date;
  drill(`Behind ${date}`, [
    { question: "orders", date },
    { question: "conversion", date },
    { question: "revenue", date },
  ]);
});
document.querySelector("#top-products tbody").addEventListener("click", (event) => {
  const tr = event.target.closest("tr");
  if (!tr || !tr.dataset.product) return;
  drill(`Behind product ${tr.dataset.product}`, [{ question: "product", product: tr.dataset.product }]);
});
document.querySelector("#lead-times tbody").addEventListener("click", (event) => {
  const tr = event.target.closest("tr");
  if (!tr || !tr.dataset.segment) return;
  drill(`Behind ${SEGMENTS[tr.dataset.segment]}`, [{ question: "lead-time", segment: tr.dataset.segment }]);
});
document.getElementById("drill-canceled").addEventListener("click", () => {
  drill("Behind canceled or refunded", [{ question: "canceled-refunded", status: "canceled_or_refunded" }]);
});
document.getElementById("drill-close").addEventListener("click", () => {
  document.getElementById("drill").hidden = true;
  drills += 1;
});

function fillKpis(figures) {
  for (const element of document.querySelectorAll(".kpis [data-kpi]")) {
    setValue(element, lookup(figures, element.dataset.kpi));
  }
  const days = figures.orders_per_day.length;
  document.getElementById("orders-detail").textContent = days
    ? `${count.format(days)} order days, ${count.format(Math.round(figures.cancel_refund.orders / days))} per day on average`
    : "no orders in this selection";
}

function width(id) {
  return Math.max(240, document.getElementById(id).clientWidth - 16);
}
const FIT = { type: "fit", contains: "padding" };

const DAY = { field: "date", type: "temporal", timeUnit: "utcyearmonthdate", axis: { format: "%b %d", labelAngle: 0 } };

function specs(figures) {
  const moneyAxis = { title: `Amount (${currency})`, format: ",.0f" };
  const revenue = figures.revenue.by_day.flatMap((row) => [
    { date: row.date, measure: "gross", amount: amount(row.gross) },
    { date: row.date, measure: "refunds", amount: amount(row.refunds) },
    { date: row.date, measure: "net", amount: amount(row.net) },
  ]);
  const segments = Object.keys(SEGMENTS);
  return {
    "chart-orders": {
      title: "Orders per day (by order date)",
      width: width("chart-orders"), autosize: FIT, height: 180,
      data: { values: figures.orders_per_day },
      mark: { type: "bar", tooltip: true, color: "#2f6fb3" },
      encoding: {
        x: { ...DAY, title: "Order date (UTC)" },
        y: { field: "orders", type: "quantitative", title: "Orders", axis: { format: ",d" } },
      },
    },
    "chart-revenue": {
      title: `Revenue per day, cash basis (${currency})`,
      width: width("chart-revenue"), autosize: FIT, height: 200,
      data: { values: revenue },
      mark: { type: "line", point: true, tooltip: true },
      encoding: {
        x: { ...DAY, title: "Capture or refund date (UTC)" },
        y: { field: "amount", type: "quantitative", axis: moneyAxis },
        color: {
          field: "measure", type: "nominal", title: null,
          scale: { domain: ["gross", "refunds", "net"], range: ["#2f6fb3", "#d64545", "#27ab83"] },
        },
        tooltip: [
          { field: "date", type: "temporal", timeUnit: "utcyearmonthdate", title: "date" },
          { field: "measure", type: "nominal" },
          { field: "amount", type: "quantitative", format: ",.2f", title: `amount (${currency})` },
        ],
      },
    },
    "chart-conversion": {
      title: "Conversion rate (by order date)",
      width: width("chart-conversion"), autosize: FIT, height: 180,
      data: { values: figures.conversion_rate.by_day },
      mark: { type: "line", point: true, tooltip: true, color: "#7b5fc5" },
      encoding: {
        x: { ...DAY, title: "Order date (UTC)" },
        y: { field: "rate", type: "quantitative", title: "Orders converted", axis: { format: ".0%" }, scale: { zero: false } },
        tooltip: [
          { field: "date", type: "temporal", timeUnit: "utcyearmonthdate", title: "date" },
          { field: "rate", type: "quantitative", format: ".2%" },
          { field: "converted", type: "quantitative" },
          { field: "created", type: "quantitative" },
        ],
      },
    },
    "chart-status": {
      title: "Orders by current status",
      width: width("chart-status"), autosize: FIT, height: 180,
      data: { values: figures.status_funnel },
      encoding: {
        // The server lists every status in lifecycle order (gold.dim_order_statuses).
        y: { field: "status", type: "nominal", sort: figures.status_funnel.map((row) => row.status), title: "Status" },
        x: { field: "orders", type: "quantitative", title: "Orders", axis: { format: ",d" } },
      },
      layer: [
        { mark: { type: "bar", color: "#3e7cb1", tooltip: true } },
        {
          mark: { type: "text", align: "left", dx: 4, color: "#1f2933" },
          encoding: { text: { field: "share", type: "quantitative", format: ".1%" } },
        },
      ],
    },
    "chart-products": {
      title: `Top products by revenue (${currency})`,
      width: width("chart-products"), autosize: FIT, height: 220,
      data: { values: figures.top_products.map((row) => ({ ...row, revenue: amount(row.revenue) })) },
      mark: { type: "bar", color: "#27ab83", tooltip: true },
      encoding: {
        y: { field: "product_name", type: "nominal", sort: "-x", title: null },
        x: { field: "revenue", type: "quantitative", axis: moneyAxis },
        tooltip: [
          { field: "product_id", type: "nominal" },
          { field: "category", type: "nominal" },
          { field: "units", type: "quantitative", format: ",d" },
          { field: "revenue", type: "quantitative", format: ",.2f", title: `revenue (${currency})` },
        ],
      },
    },
    "chart-lead-times": {
      title: `Lead-time distributions (bins of ${figures.lead_time_histogram.bin_hours} h)`,
      data: { values: figures.lead_time_histogram.bins },
      facet: {
        row: { field: "segment", type: "nominal", sort: segments, title: null,
               header: { labelExpr: "replace(datum.value, /_/g, ' ')", labelAngle: 0, labelAlign: "left" } },
      },
      spec: {
        width: width("chart-lead-times") - 190, height: 50,
        mark: { type: "bar", tooltip: true, color: "#e8833a" },
        encoding: {
          x: { field: "from_hours", type: "quantitative", bin: { binned: true }, title: "Hours" },
          x2: { field: "to_hours" },
          y: { field: "orders", type: "quantitative", title: "Orders" },
        },
      },
      resolve: { scale: { y: "independent" } },
    },
  };
}

// The page runs under a Content-Security-Policy without 'unsafe-eval' or inline styles:
// Vega evaluates expressions with its interpreter (ast), and neither vega-embed nor its
// tooltip injects a <style> (their rules are in dashboard.css).
const EMBED = {
  renderer: "svg",
  actions: false,
  ast: true,
  defaultStyle: false,
  tooltip: { disableDefaultStyle: true },
};

async function draw(figures) {
  const all = specs(figures);
  await Promise.all(Object.entries(all).map(async ([id, spec]) => {
    if (views[id]) views[id].finalize();
    const result = await vegaEmbed(`#${id}`, spec, EMBED);
    views[id] = result;
  }));
}

async function load() {
  if (inFlight) return;
  inFlight = true;
  const wanted = query();
  try {
    const response = await fetch(`/api/data?${wanted}`, { cache: "no-store" });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    showMeta(data.meta);
    fillOptions(data.options);
    const figures = JSON.stringify(data.figures);
    if (figures !== lastFigures) {
      lastFigures = figures;
      fillKpis(data.figures);
      fillTables(data.figures);
      fillDaily(data.figures);
      markRestated();
      await draw(data.figures);
    }
    document.body.dataset.query = wanted;
    document.body.dataset.state = "ready";
    document.body.dataset.renders = String(++renders);
  } catch (error) {
    document.body.dataset.state = "error";
    const warning = document.getElementById("warning");
    warning.hidden = false;
    warning.textContent = `Cannot read the dashboard data: ${error.message}`;
  } finally {
    inFlight = false;
  }
  if (query() !== wanted) load();
}

form.addEventListener("change", load);
form.addEventListener("reset", () => setTimeout(load, 0));
form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
setInterval(load, POLL_MS);
load();
