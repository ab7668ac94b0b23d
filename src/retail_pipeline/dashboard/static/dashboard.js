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
  const health = document.getElementById("health");
  health.textContent = meta.health && meta.health.line ? meta.health.line : "health unknown";
  health.dataset.status = (meta.health && meta.health.status) || "unknown";
}

function fillTables(figures) {
  const products = document.querySelector("#top-products tbody");
  products.replaceChildren(...figures.top_products.map((row, index) => {
    const tr = document.createElement("tr");
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
