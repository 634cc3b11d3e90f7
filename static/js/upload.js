// Upload page: drag and drop, one request per file with a progress bar,
// then polling of the image's JSON endpoint until its prediction is stored.
// Without JavaScript the form posts normally and the server renders results.
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) {
    return;
  }

  var apiUrl = form.dataset.apiUrl;
  var input = document.getElementById("file-input");
  var dropZone = document.getElementById("drop-zone");
  var list = document.getElementById("upload-list");
  var section = document.getElementById("upload-section");
  var csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var notice = document.getElementById("upload-notice");
  var smallSide = parseInt(form.dataset.smallSide, 10) || 0;
  var POLL_INTERVAL_MS = 400;
  var PARALLEL_UPLOADS = 3;
  var queue = [];
  var active = 0;
  // Set by the first response over the upload limit (429): the files still queued are not sent.
  var limitReached = false;

  input.required = false;
  Array.prototype.forEach.call(document.querySelectorAll(".js-only"), function (node) {
    node.hidden = false;
  });

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Class names as visitors read them, by the rule of the element_name
  // template filter: bell_tower to "bell tower", dome(inner) to "inner dome".
  function elementName(className) {
    var words = String(className).replace(/_/g, " ").trim();
    var qualified = /^([\w ]+)\(([\w ]+)\)$/.exec(words);
    return qualified ? qualified[2].trim() + " " + qualified[1].trim() : words;
  }

  function renderProbabilities(probabilities) {
    var ranked = Object.keys(probabilities)
      .map(function (name) { return [name, probabilities[name]]; })
      .sort(function (a, b) { return b[1] - a[1]; })
      .slice(0, 3);
    var ul = element("ul", "probabilities");
    ranked.forEach(function (pair) {
      var percent = Math.round(pair[1] * 100);
      var li = element("li");
      li.appendChild(element("span", "probability-label", elementName(pair[0])));
      var bar = element("span", "bar");
      bar.setAttribute("aria-hidden", "true");
      var fill = element("span", "bar-fill");
      fill.style.width = percent + "%";
      bar.appendChild(fill);
      li.appendChild(bar);
      li.appendChild(element("span", "probability-value", percent + "%"));
      ul.appendChild(li);
    });
    return ul;
  }

  function showImage(item, image) {
    item.status.className = "status status-" + image.status;
    if (image.status === "pending") {
      item.status.textContent = "Uploaded. Waiting for the model…";
      return false;
    }
    if (image.status === "failed") {
      item.status.textContent = "Prediction failed: " + (image.error || "unknown error");
      return true;
    }
    item.status.textContent = "";
    var link = element("a", "label", elementName(image.prediction.label));
    link.href = image.page_url;
    item.status.appendChild(link);
    if (smallSide && Math.min(image.width, image.height) < smallSide) {
      item.body.appendChild(element("p", "message message-warning",
        "This photo is under " + smallSide + " pixels on its short side, too small for a reliable prediction."));
    }
    item.body.appendChild(renderProbabilities(image.prediction.probabilities));
    item.node.dataset.label = image.prediction.label;
    return true;
  }

  function poll(item, url) {
    var request = new XMLHttpRequest();
    request.open("GET", url);
    request.setRequestHeader("Accept", "application/json");
    request.onload = function () {
      if (request.status !== 200) {
        item.status.textContent = "Could not read the prediction (HTTP " + request.status + "). Open the gallery later.";
        return;
      }
      var image = JSON.parse(request.responseText);
      if (!showImage(item, image)) {
        window.setTimeout(function () { poll(item, url); }, POLL_INTERVAL_MS);
      }
    };
    request.onerror = function () {
      window.setTimeout(function () { poll(item, url); }, POLL_INTERVAL_MS * 5);
    };
    request.send();
  }

  function errorMessage(request) {
    try {
      var body = JSON.parse(request.responseText);
      if (body.results && body.results[0] && body.results[0].error) return body.results[0].error.message;
      if (body.error) return body.error.message;
    } catch (ignored) {
      // Not JSON (e.g. a proxy error page): fall through to the status code.
    }
    return "Upload failed (HTTP " + request.status + ").";
  }

  function finishUpload(item, request) {
    item.progress.remove();
    var entry = null;
    if (request.status === 201 || request.status === 400) {
      try { entry = JSON.parse(request.responseText).results[0]; } catch (ignored) { entry = null; }
    }
    if (entry && entry.id) {
      item.thumb.src = entry.thumbnail_url;
      item.thumb.alt = "Uploaded photo " + item.file.name;
      if (!showImage(item, entry)) poll(item, entry.url);
      return;
    }
    item.status.className = "status status-rejected";
    item.thumb.hidden = true;
    if (request.status === 429) {
      // The limit's long message is shown once, above the list, rather than on every refused photo.
      limitReached = true;
      notice.textContent = errorMessage(request);
      notice.hidden = false;
      item.status.textContent = "Refused: the upload limit was reached (see the message above). Choose this photo again later.";
      return;
    }
    item.status.textContent = entry && entry.error ? entry.error.message : errorMessage(request);
  }

  function skipUpload(item) {
    item.progress.remove();
    item.thumb.hidden = true;
    item.status.className = "status status-rejected";
    item.status.textContent = "Not sent: the upload limit was reached (see the message above). Choose this photo again later.";
  }

  function startUpload(item) {
    active += 1;
    var data = new FormData();
    data.append("file", item.file, item.file.name);
    var request = new XMLHttpRequest();
    request.open("POST", apiUrl);
    request.setRequestHeader("X-CSRFToken", csrfToken);
    request.setRequestHeader("Accept", "application/json");
    request.upload.onprogress = function (event) {
      if (event.lengthComputable) {
        item.progress.value = event.loaded / event.total;
      }
    };
    request.onload = function () {
      active -= 1;
      finishUpload(item, request);
      next();
    };
    request.onerror = function () {
      active -= 1;
      item.progress.remove();
      item.thumb.hidden = true;
      item.status.className = "status status-rejected";
      item.status.textContent = "Upload failed: the server could not be reached.";
      next();
    };
    item.status.textContent = "Uploading…";
    request.send(data);
  }

  function next() {
    while (limitReached && queue.length) {
      skipUpload(queue.shift());
    }
    while (active < PARALLEL_UPLOADS && queue.length) {
      startUpload(queue.shift());
    }
  }

  function addFiles(files) {
    // One request per file, so the per-request file limit of the plain form
    // does not apply here: every chosen file is queued.
    var selected = Array.prototype.slice.call(files);
    if (!selected.length) return;
    notice.hidden = true;
    section.hidden = false;
    // A new batch tries again: the limit may have reset since the last refusal.
    limitReached = false;
    // The newest batch goes on top, in the order its files were chosen.
    var batch = document.createDocumentFragment();
    selected.forEach(function (file) {
      var node = element("li", "upload-item");
      var thumb = element("img", "upload-thumb");
      thumb.alt = "";
      var body = element("div", "upload-body");
      body.appendChild(element("div", "upload-name", file.name));
      var progress = element("progress");
      progress.max = 1;
      progress.value = 0;
      progress.setAttribute("aria-label", "Upload progress of " + file.name);
      var status = element("p", "status status-pending", "Queued");
      body.appendChild(progress);
      body.appendChild(status);
      node.appendChild(thumb);
      node.appendChild(body);
      batch.appendChild(node);
      queue.push({ file: file, node: node, thumb: thumb, body: body, progress: progress, status: status });
    });
    list.insertBefore(batch, list.firstChild);
    next();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!input.files.length) {
      notice.textContent = "Choose one or more photos to upload: they are sent as soon as they are chosen.";
      notice.hidden = false;
      input.focus();
      return;
    }
    addFiles(input.files);
    form.reset();
  });
  input.addEventListener("change", function () {
    addFiles(input.files);
    form.reset();
  });

  ["dragenter", "dragover"].forEach(function (name) {
    dropZone.addEventListener(name, function (event) {
      event.preventDefault();
      dropZone.classList.add("is-dragover");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    dropZone.addEventListener(name, function (event) {
      event.preventDefault();
      dropZone.classList.remove("is-dragover");
    });
  });
  dropZone.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files) addFiles(event.dataTransfer.files);
  });
})();
