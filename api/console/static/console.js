// The console's little bit of behaviour: line numbers in the SQL editor (the error's line marked), adding and
// removing parameter rows, copy buttons, and confirmation of destructive forms.
(function () {
  "use strict";

  function gutter(editor) {
    var area = editor.querySelector("textarea"), pre = editor.querySelector(".gutter");
    var bad = parseInt(editor.getAttribute("data-error-line") || "0", 10);
    function draw() {
      var n = area.value.split("\n").length, html = [];
      for (var i = 1; i <= n; i++) html.push((i === bad ? '<span class="bad">' : "<span>") + i + "</span>");
      pre.innerHTML = html.join("");
      pre.scrollTop = area.scrollTop;
    }
    area.addEventListener("input", draw);
    area.addEventListener("scroll", function () { pre.scrollTop = area.scrollTop; });
    area.addEventListener("keydown", function (e) {
      if (e.key === "Tab" && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey) {
        e.preventDefault();
        var s = area.selectionStart;
        area.setRangeText("  ", s, area.selectionEnd, "end");
        draw();
      }
    });
    draw();
  }

  function paramRows() {
    var body = document.getElementById("param-rows"), add = document.getElementById("add-param");
    if (!body || !add) return;
    add.addEventListener("click", function () {
      var row = body.querySelector(".param-row").cloneNode(true);
      row.querySelectorAll("input").forEach(function (i) { i.value = ""; });
      row.querySelectorAll("select").forEach(function (s) { s.selectedIndex = 0; });
      body.appendChild(row);
      row.querySelector("input").focus();
    });
    body.addEventListener("click", function (e) {
      var button = e.target.closest(".remove-row");
      if (!button) return;
      var rows = body.querySelectorAll(".param-row");
      var row = button.closest(".param-row");
      if (rows.length > 1) row.remove(); else row.querySelectorAll("input").forEach(function (i) { i.value = ""; });
    });
  }

  function copyButtons() {
    document.querySelectorAll("button.copy").forEach(function (b) {
      b.addEventListener("click", function () {
        var source = document.querySelector(b.getAttribute("data-copy"));
        var value = source.value !== undefined ? source.value : source.textContent;
        if (navigator.clipboard) navigator.clipboard.writeText(value).then(function () { b.textContent = "Copied"; });
      });
    });
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) { if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".sql-editor").forEach(gutter);
    paramRows();
    copyButtons();
    confirmations();
  });
})();
