// keel console: sortable tables. Click (or press Enter on) a column header to sort by it;
// again to reverse. Cells sort by their data-sort value when they have one (numbers as
// numbers), else by their text.
"use strict";
(function () {
  function key(cell) {
    if (!cell) return "";
    const s = cell.getAttribute("data-sort");
    return s !== null ? s : cell.textContent.trim();
  }
  function compare(a, b) {
    const x = parseFloat(a), y = parseFloat(b);
    const nx = a !== "" && !isNaN(x) && isFinite(a), ny = b !== "" && !isNaN(y) && isFinite(b);
    if (nx && ny) return x - y;
    if (nx) return -1;
    if (ny) return 1;
    return a.localeCompare(b);
  }
  function sortBy(table, th) {
    const index = Array.prototype.indexOf.call(th.parentNode.children, th);
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const body = table.tBodies[0];
    const rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      const c = compare(key(r1.cells[index]), key(r2.cells[index]));
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      table.querySelectorAll("thead th").forEach(function (th) {
        th.addEventListener("click", function () { sortBy(table, th); });
        th.addEventListener("keydown", function (e) {
          if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); }
        });
      });
    });
  });
})();
