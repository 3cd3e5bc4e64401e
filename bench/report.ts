// Rows of the result table, their formatting, and the targets of issue 6.
import type { Summary } from "./stats.js";

export interface Row {
  section: string;
  figure: string;
  unit: string;
  /** Percentiles of a sample (latencies in ms, throughput in MiB/s). */
  summary?: Summary;
  /** A single value, or why the figure is missing ("n/a (…)"). */
  value?: number | string;
  /** sbx figure over its baseline (for throughput: sbx rate over baseline rate). */
  ratio?: number;
  baseline?: string;
  target?: string;
  met?: boolean;
}

export interface SectionResult {
  name: string;
  rows: Row[];
  /** Everything measured, for latest.json. */
  data: Record<string, unknown>;
  notes: string[];
  error?: string;
}

export function fmt(x: number | undefined): string {
  if (x === undefined || Number.isNaN(x)) return "-";
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function ratioCell(r: Row): string {
  if (r.ratio === undefined || Number.isNaN(r.ratio)) return "";
  return `${r.ratio.toFixed(r.ratio < 0.1 ? 3 : 2)}× ${r.baseline ?? ""}`.trim();
}

function targetCell(r: Row): string {
  if (!r.target) return "";
  return r.met === undefined ? r.target : `${r.target} ${r.met ? "met" : "MISSED"}`;
}

/** A plain-text table of every row, grouped by section. */
export function renderTable(rows: Row[]): string {
  const head = ["figure", "unit", "n", "p50", "p95", "max", "ratio (p50)", "target"];
  const body: string[][] = [];
  let section = "";
  for (const r of rows) {
    if (r.section !== section) {
      section = r.section;
      body.push([`[${section}]`, "", "", "", "", "", "", ""]);
    }
    const s = r.summary;
    const cells = s
      ? [String(s.n), fmt(s.p50), fmt(s.p95), fmt(s.max)]
      : ["", typeof r.value === "number" ? fmt(r.value) : (r.value ?? ""), "", ""];
    body.push([`  ${r.figure}`, r.unit, ...cells, ratioCell(r), targetCell(r)]);
  }
  // A long text value (e.g. "n/a (…)") in a number column may overflow it.
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i]!.length > (i >= 2 && i <= 5 ? 12 : 60) ? 0 : b[i]!.length))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i >= 2 && i <= 5 && c.length <= widths[i]! ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

/** Ratio of two p50s (NaN when either is missing). */
export function ratio(a: Summary | undefined, b: Summary | undefined): number {
  if (!a || !b || !a.n || !b.n) return NaN;
  return a.p50 / b.p50;
}
