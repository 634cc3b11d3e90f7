// Job page: polls the progress endpoint while the job is queued or running,
// updates the status, progress bars and per-epoch charts, and reloads once
// when the job finishes so that the server renders the results.
(function () {
  "use strict";

  const root = document.getElementById("training-job");
  if (!root) return;

  const POLL_MS = 2000;
  const progressUrl = root.dataset.progressUrl;
  const initialStatus = root.dataset.status;
  const finished = ["succeeded", "failed", "cancelled"];
  const epochData = JSON.parse(document.getElementById("epoch-data").textContent);

  function formatSeconds(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const total = Math.round(seconds);
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const rest = total % 60;
    if (hours) return `${hours} h ${minutes} min`;
    if (minutes) return `${minutes} min ${rest} s`;
    return `${rest} s`;
  }

  function lineChart(canvasId, datasets, yMax) {
    const canvas = document.getElementById(canvasId);
    if (!canvas || typeof Chart === "undefined") return null;
    return new Chart(canvas, {
      type: "line",
      data: { labels: [], datasets: datasets },
      options: {
        animation: false,
        scales: {
          x: { title: { display: true, text: "epoch" } },
          y: yMax ? { min: 0, max: yMax } : { beginAtZero: true },
        },
      },
    });
  }

  const lossChart = lineChart("loss-chart", [{ label: "training loss", data: [], borderColor: "#b5452b" }]);
  const valChart = lineChart(
    "val-chart",
    [
      { label: "validation accuracy", data: [], borderColor: "#2b6cb5" },
      { label: "validation macro-F1", data: [], borderColor: "#2b9b5a" },
    ],
    1
  );

  function drawEpochs(epochs) {
    const labels = epochs.map((row) => row.epoch);
    if (lossChart) {
      lossChart.data.labels = labels;
      lossChart.data.datasets[0].data = epochs.map((row) => row.train_loss);
      lossChart.update();
    }
    if (valChart) {
      valChart.data.labels = labels;
      valChart.data.datasets[0].data = epochs.map((row) => row.val_accuracy);
      valChart.data.datasets[1].data = epochs.map((row) => row.val_macro_f1);
      valChart.update();
    }
  }

  function message(state) {
    if (state.status === "queued") {
      const ahead = state.queue_position;
      return `Waiting for a training worker; ${ahead} job${ahead === 1 ? "" : "s"} ahead of it.`;
    }
    if (state.status === "running") {
      return state.cancel_requested ? "Stopping at the next batch." : `Running: ${state.phase}.`;
    }
    return { succeeded: "Finished.", cancelled: "Cancelled.", failed: "Failed." }[state.status] || state.status;
  }

  function render(state) {
    const status = document.getElementById("job-status");
    status.textContent = state.status.charAt(0).toUpperCase() + state.status.slice(1);
    status.className = `status status-${state.status}`;
    document.getElementById("job-message").textContent = message(state);
    document.getElementById("epoch-progress").value = state.epoch_progress;
    document.getElementById("job-progress").value = state.progress;
    document.getElementById("epoch-label").textContent = `${state.current_epoch} of ${state.total_epochs}`;
    document.getElementById("job-percent").textContent = `${Math.round(state.progress * 100)}%`;
    document.getElementById("elapsed").textContent = formatSeconds(state.elapsed_seconds);
    document.getElementById("remaining").textContent = formatSeconds(state.remaining_seconds);
    document.getElementById("last-loss").textContent =
      state.last_loss === null ? "–" : state.last_loss.toFixed(4);
    const failure = document.getElementById("failure-reason");
    failure.textContent = state.failure_reason;
    failure.hidden = !state.failure_reason;
    // Once a cancel is asked for, a second click would only be refused.
    const cancelForm = document.getElementById("cancel-form");
    if (cancelForm && state.cancel_requested) cancelForm.hidden = true;
    drawEpochs(state.epochs);
  }

  async function poll() {
    try {
      const response = await fetch(progressUrl, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const state = await response.json();
        render(state);
        if (state.is_finished) {
          if (!finished.includes(initialStatus)) window.location.reload();
          return;
        }
      }
    } catch (error) {
      // A network blip: try again at the next tick.
      console.warn("training job progress request failed", error);
    }
    window.setTimeout(poll, POLL_MS);
  }

  drawEpochs(epochData);
  // A finished job is fetched once, for its elapsed time.
  poll();
})();
