// clipbench leaderboard: sortable tables. Works from file:// with no network: it only reorders the rows
// already in the page (it never fetches and never parses markup). A header button sorts best-first on its
// first click (the column's data-best: "max" or "min"; text columns A to Z), the other way on the next;
// rows without a value stay last and ties keep the ranking order.
"use strict";
(function () {
  function value(row, col, numeric) {
    var cell = row.cells[col];
    var raw = cell ? cell.getAttribute("data-sort") : null;
    if (raw === null) {
      return null;
    }
    return numeric ? parseFloat(raw) : raw;
  }

  function sortBy(table, col, th) {
    var numeric = th.getAttribute("data-type") === "number";
    var bestFirst = th.getAttribute("data-best") === "min" || !numeric ? "ascending" : "descending";
    var current = th.getAttribute("aria-sort");
    var order = current === bestFirst ? (bestFirst === "ascending" ? "descending" : "ascending") : bestFirst;
    var sign = order === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, col, numeric);
      var y = value(b, col, numeric);
      if (x === null || y === null) {
        if (x === null && y === null) {
          return rank(a) - rank(b);
        }
        return x === null ? 1 : -1;
      }
      var c = numeric ? x - y : x.localeCompare(y);
      return c !== 0 ? sign * c : rank(a) - rank(b);
    });
    rows.forEach(function (row) {
      body.appendChild(row);
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
      if (other.hasAttribute("aria-sort")) {
        other.setAttribute("aria-sort", "none");
      }
    });
    th.setAttribute("aria-sort", order);
  }

  function rank(row) {
    return parseInt(row.getAttribute("data-rank"), 10);
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      var button = th.querySelector("button");
      if (button) {
        button.addEventListener("click", function () {
          sortBy(table, col, th);
        });
      }
    });
  });
})();
