// Comparison page: per-class F1 bar chart of the reference rows and the
// selected jobs, drawn from the comparison JSON endpoint.
(function () {
  "use strict";

  const root = document.getElementById("training-compare");
  const canvas = document.getElementById("compare-chart");
  if (!root || !canvas || typeof Chart === "undefined") return;

  const palette = ["#888888", "#444444", "#2b6cb5", "#b5452b", "#2b9b5a", "#8a4fb5", "#c28a1e", "#1e9cc2"];
  // On a phone the bars run sideways, one class per row, so that the class
  // names and the bars get the screen's height rather than its width.
  const narrow = window.matchMedia("(max-width: 640px)").matches;

  // Class names as visitors read them, by the rule of the element_name
  // template filter (and of upload.js): bell_tower to "bell tower", dome(inner) to "inner dome".
  function elementName(className) {
    const words = String(className).replace(/_/g, " ").trim();
    const qualified = /^([\w ]+)\(([\w ]+)\)$/.exec(words);
    return qualified ? qualified[2].trim() + " " + qualified[1].trim() : words;
  }

  fetch(root.dataset.chartUrl, { headers: { Accept: "application/json" } })
    .then((response) => response.json())
    .then((table) => {
      if (!table.rows) return;
      // Start the axis at 0.5 as long as every bar reaches it, so that the
      // differences near the top stay visible, and lower it in steps of 0.1
      // otherwise, so that no bar is hidden below the axis.
      const scores = table.rows.flatMap((row) => row.cells.map((cell) => cell.f1)).filter((f1) => f1 !== null);
      const lowest = Math.min(0.5, ...scores);
      const axisMin = Math.max(0, Math.floor(lowest * 10) / 10);
      const scoreAxis = { min: axisMin, max: 1, title: { display: true, text: "F1" } };
      // A fixed box height (the chart fills it) keeps the bars readable on any width.
      canvas.parentElement.style.height = narrow
        ? `${table.classes.length * (table.rows.length * 10 + 14) + 160}px`
        : "26rem";
      new Chart(canvas, {
        type: "bar",
        data: {
          labels: table.classes.map(elementName),
          datasets: table.rows.map((row, index) => ({
            // A phone's legend cannot wrap a long label, so it shows the part before the colon ("Job 1").
            label: narrow ? row.label.split(":")[0] : row.label,
            data: row.cells.map((cell) => cell.f1),
            backgroundColor: palette[index % palette.length],
          })),
        },
        options: {
          animation: false,
          maintainAspectRatio: false,
          indexAxis: narrow ? "y" : "x",
          scales: narrow ? { x: scoreAxis } : { y: scoreAxis },
          plugins: { legend: { position: narrow ? "bottom" : "top", align: "start" } },
        },
      });
      canvas.dataset.axisMin = String(axisMin);
      canvas.dataset.ready = "1";
    })
    .catch((error) => console.warn("comparison data request failed", error));
})();
