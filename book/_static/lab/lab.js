/* Classic CNNs lab: the LeNet and VGG chapters' trained nets, run in the reader's browser
 * by onnxruntime-web (WebAssembly, served from this site). Plain script, no build step.
 * Loaded by book/lab.md's small loader with data-base = the site's _static/lab/ folder.
 * window.classicCnnsLab exposes the state and the functions the tests call.
 * On the Chinese edition's page (<html lang="zh-CN">) its own text is in Chinese (T below). */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script.getAttribute("data-base") || "./", location.href).href;
  var root = new URL("../../", base).href;   // the site's root: base is <root>/_static/lab/
  var N = 28, SCALE = 10;               // 28 x 28 input, drawn 10x larger
  var lab = window.classicCnnsLab = {
    base: base, models: {}, errors: {}, manifest: null, images: null,
    current: new Float32Array(N * N), version: 0, label: 0, source: "", timings: {},
    firstPredictionMs: null, last: {},
    marks: {},   // ms since navigation: when the runtime, each file and each session were ready
  };
  var mark = function (name) { lab.marks[name] = Math.round(performance.now()); };
  var el = function (tag, attrs, parent, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  };
  var $ = function (id) { return document.getElementById(id); };
  var fmt = function (p) { return (100 * p).toFixed(1) + "%"; };
  // The page's language picks the lab's own words; the data (runs, files) stay as they are.
  var ZH = /^zh/i.test(document.documentElement.lang || "");
  var T = function (en, zh) { return ZH ? zh : en; };
  var CLASSES_ZH = { "t-shirt": "T恤", "trouser": "裤子", "pullover": "套衫", "dress": "连衣裙", "coat": "外套",
                     "sandal": "凉鞋", "shirt": "衬衫", "sneaker": "运动鞋", "bag": "包", "ankle boot": "短靴" };
  var TITLES_ZH = { "lenet": "LeNet（ReLU、最大池化、Adam）",
                    "lenet-sigmoid": "1998 年的 LeNet-5（sigmoid、平均池化、SGD，学习率 0.9）",
                    "vgg11-div8": "VGG-11 ÷8（八个 3×3 卷积，224 px）" };
  // The taps' labels as the manifest writes them, in Chinese (any other label stays as stored).
  var TAPS_ZH = { "conv1 (5×5, after the activation)": "conv1（5×5，激活函数之后）",
                  "conv2 (5×5, after the activation)": "conv2（5×5，激活函数之后）",
                  "block 1 (3×3 conv, ReLU, 2×2 max pool)": "第 1 块（3×3 卷积、ReLU、2×2 最大池化）",
                  "block 2 (3×3 conv, ReLU, 2×2 max pool)": "第 2 块（3×3 卷积、ReLU、2×2 最大池化）" };
  var cls = function (c) { var en = lab.manifest.classes[c]; return ZH ? (CLASSES_ZH[en] || en) : en; };
  var title = function (m) { return ZH ? (TITLES_ZH[m.key] || m.title) : m.title; };
  var tapLabel = function (t) { return ZH ? (TAPS_ZH[t.label] || t.label) : t.label; };

  function showError(parent, text) {
    var box = el("div", { "class": "lab-error", role: "alert" }, null, text);
    parent.insertBefore(box, parent.firstChild);
    return box;
  }

  // ---- loading -------------------------------------------------------------------
  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var s = el("script", { src: src });
      s.onload = resolve;
      s.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(s);
    });
  }
  function fetchOk(url, kind) {
    // Revalidated every time: a rebuilt site's manifest and models must not mix with cached ones.
    return fetch(url, { cache: "no-cache" }).then(function (r) {
      if (!r.ok) throw new Error(url.replace(base, "") + ": HTTP " + r.status + (r.status === 404 ? " (the file is missing)" : ""));
      return r[kind]();
    });
  }
  function hex(buf) {
    return Array.prototype.map.call(new Uint8Array(buf), function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function fetchModel(m) {
    // Resolves to the checked bytes, or rejects with a message a reader can act on.
    return fetchOk(base + m.file, "arrayBuffer").then(function (buf) {
      var check = (window.crypto && crypto.subtle) ? crypto.subtle.digest("SHA-256", buf).then(hex) : Promise.resolve(null);
      return check.then(function (sum) {
        if (sum && sum !== m.sha256)
          throw new Error(m.file + " is corrupt: its SHA-256 is not the one in models/manifest.json (" +
                          buf.byteLength.toLocaleString() + " bytes, expected " + m.bytes.toLocaleString() + ")");
        mark("file " + m.key);
        return buf;
      });
    });
  }
  function createSession(m, buf) {
    // In the inference queue, so that a big model's set-up never runs inside another's call.
    return enqueue(function () {
      return ortReady.then(function () {
        return ort.InferenceSession.create(new Uint8Array(buf), { executionProviders: ["wasm"] });
      }).then(function (s) { mark("session " + m.key); return s; });
    }).catch(function (e) {
      throw new Error(m.file + " could not be read as an ONNX model: " + (e && e.message || e));
    });
  }

  var ortReady = loadScript(base + "ort/ort.wasm.min.js").then(function () {
    ort.env.wasm.wasmPaths = base + "ort/";
    ort.env.wasm.numThreads = 1;     // threads need cross-origin isolation, which a static host lacks
    ort.env.wasm.proxy = false;
    ort.env.logLevel = "error";
    mark("runtime");
  });

  // One inference at a time (a WebAssembly session runs one call at a time).
  var queue = Promise.resolve();
  function enqueue(fn) {
    var job = queue.then(fn);
    queue = job.catch(function () {});
    return job;
  }
  // probs only (an occlusion batch), or every output (probs and the feature maps).
  function run(key, pixels, batch, all) {
    return enqueue(function () {
      var sess = lab.models[key];
      if (!sess) throw new Error(lab.errors[key] || ("model " + key + " is not loaded yet"));
      var n = batch || 1;
      var t0 = performance.now();
      var feeds = { input: new ort.Tensor("float32", pixels, [n, 1, N, N]) };
      return sess.run(feeds, all ? sess.outputNames : ["probs"]).then(function (out) {
        var ms = performance.now() - t0;
        var res = { probs: out.probs.data, maps: {}, ms: ms };
        tapsOf(modelOf(key)).forEach(function (t) { if (out[t.name]) res.maps[t.name] = out[t.name]; });
        return res;
      });
    });
  }
  lab.run = run;
  var pause = function () { return new Promise(function (r) { setTimeout(r, 0); }); };

  // ---- drawing helpers -------------------------------------------------------------
  var MAGMA = [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122],
               [229, 80, 100], [251, 135, 97], [254, 194, 135], [252, 253, 191]];
  function magma(v) {
    v = Math.max(0, Math.min(1, v)) * (MAGMA.length - 1);
    var i = Math.min(Math.floor(v), MAGMA.length - 2), t = v - i, a = MAGMA[i], b = MAGMA[i + 1];
    return [0, 1, 2].map(function (c) { return Math.round(a[c] + t * (b[c] - a[c])); });
  }
  function paintGray(canvas, data, w, h, lo, hi) {
    var ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h);
    var span = hi - lo || 1;
    for (var i = 0; i < w * h; i++) {
      var v = Math.round(255 * Math.max(0, Math.min(1, (data[i] - lo) / span)));
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v; img.data[4 * i + 3] = 255;
    }
    var tmp = document.createElement("canvas"); tmp.width = w; tmp.height = h;
    tmp.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
  }
  function range(data, off, len) {
    var lo = Infinity, hi = -Infinity;
    for (var i = off; i < off + len; i++) { if (data[i] < lo) lo = data[i]; if (data[i] > hi) hi = data[i]; }
    return [lo, hi];
  }
  function pointerPixel(canvas, ev) {
    var r = canvas.getBoundingClientRect();
    return [(ev.clientX - r.left) / r.width * N, (ev.clientY - r.top) / r.height * N];
  }

  // ---- the page ----------------------------------------------------------------------
  var ui = {};
  var modelKeys = function () { return lab.manifest.models.map(function (m) { return m.key; }); };
  var modelOf = function (key) { return lab.manifest.models.filter(function (m) { return m.key === key; })[0]; };
  // The feature maps a model returns and what to call them (older manifests: the output names).
  function tapsOf(m) {
    return m.taps || m.outputs.filter(function (o) { return o !== "probs"; }).map(function (o) { return { name: o, label: o }; });
  }
  var chapterUrl = function (m) { return root + m.chapter + ".html"; };
  var chapterName = function (m) {
    return (ZH ? { "notebooks/01_lenet": "LeNet 一章", "notebooks/04_vgg": "VGG 一章" }
               : { "notebooks/01_lenet": "LeNet chapter", "notebooks/04_vgg": "VGG chapter" })[m.chapter] || m.chapter;
  };
  var thousands = function (n) { return n.toLocaleString("en"); };
  function notReady(key) {
    // The reason a model cannot run now, or "" when it can.
    if (lab.errors[key]) return lab.errors[key];
    return lab.models[key] ? "" : T("loading “" + modelOf(key).title + "”…", "正在加载“" + title(modelOf(key)) + "”…");
  }

  function buildAbout() {
    // What each net is and which run its weights come from, read from the manifest.
    var box = $("lab-about");
    if (!box) return;
    box.innerHTML = "";
    var list = el("ul", {}, box);
    var gflops = function (f) { return (f / 1e9).toFixed(f < 1e8 ? 4 : 2); };
    lab.manifest.models.forEach(function (m) {
      var li = el("li", { "data-model": m.key }, list), r = m.run;
      var text = function (t) { li.appendChild(document.createTextNode(t)); };
      el("strong", {}, li, title(m));
      if (ZH) {
        text("，出自");
        el("a", { href: chapterUrl(m) }, li, chapterName(m));
        text("：" + thousands(m.params) + " 个参数" + (m.flops ? "，每张图像 " + gflops(m.flops) + " GFLOPs" : "") + "。");
        if (m.net_input && m.net_input[1] !== N)
          text("它的输入是 " + m.net_input[1] + " × " + m.net_input[2] + " px：页面上 28 px 的图像在模型内部放大，" +
               "所用的双线性权重与它的训练图像缩放时所用的相同。");
        text("权重来自 ");
        el("code", {}, li, m.recipe);
        text(" 这次运行：" + r.device + " 上的 " + r.profile + " 运行配置，" + thousands(r.n_train) + " 张训练图像 × " +
             r.epochs + " 个迭代周期，在 " + thousands(r.n_test) + " 张测试图像上的测试准确率为 " + r.test_acc.toFixed(4) + "（");
        el("code", {}, li, r.file);
        text("）。");
        if (m.fp16_check) {
          var c = m.fp16_check;
          text("以 float16 存储，文件小一半，按 float32 计算：在全部 " + thousands(c.n_test) + " 张测试图像上，" +
               "用这些权重的测试准确率为 " + c.test_acc_fp16.toFixed(4) + "，用 float32 权重为 " + c.test_acc_fp32.toFixed(4) +
               "；没有一个概率的变化超过 " + c.max_prob_diff.toExponential(1) + "。");
        }
        return;
      }
      text(", from the ");
      el("a", { href: chapterUrl(m) }, li, chapterName(m));
      text(": " + thousands(m.params) + " parameters" + (m.flops ? ", " + gflops(m.flops) + " GFLOPs per image" : "") + ".");
      if (m.net_input && m.net_input[1] !== N)
        text(" It takes " + m.net_input[1] + " × " + m.net_input[2] + " px: the page's 28 px image is enlarged inside " +
             "the model, with the bilinear weights its training images were resized with.");
      text(" Weights of the ");
      el("code", {}, li, m.recipe);
      text(" run: the " + r.profile + " profile on " + r.device + ", " + thousands(r.n_train) + " training images × " +
           r.epochs + " epoch" + (r.epochs > 1 ? "s" : "") + ", test accuracy " + r.test_acc.toFixed(4) + " on " +
           thousands(r.n_test) + " test images (");
      el("code", {}, li, r.file);
      text(").");
      if (m.fp16_check) {
        var c = m.fp16_check;
        text(" Stored in float16 to halve the file, computed in float32: test accuracy " + c.test_acc_fp16.toFixed(4) +
             " with these weights against " + c.test_acc_fp32.toFixed(4) + " with the float32 ones, on all " +
             thousands(c.n_test) + " test images; no probability moved by more than " + c.max_prob_diff.toExponential(1) + ".");
      }
    });
  }

  function buildRuns() {
    var box = $("lab-runs");
    box.innerHTML = "";
    var t = el("table", { "class": "lab-runs table" }, el("div", { "class": "lab-scroll" }, box));
    var head = el("tr", {}, el("thead", {}, t));
    (ZH ? ["网络", "运行（训练方案）", "设备", "运行配置", "训练图像数 × 迭代周期", "测试图像数", "测试准确率", "模型文件"]
        : ["net", "run (recipe)", "device", "profile", "training images × epochs", "test images", "test accuracy", "model file"])
      .forEach(function (h) { el("th", {}, head, h); });
    var body = el("tbody", {}, t);
    lab.manifest.models.forEach(function (m) {
      var r = el("tr", { "data-model": m.key }, body);
      [title(m), m.run.file.replace("notebooks/runs/", "").replace(".json", "") + " (" + m.recipe + ")", m.run.device,
       m.run.profile, m.run.n_train.toLocaleString("en") + " × " + m.run.epochs, m.run.n_test.toLocaleString("en"),
       m.run.test_acc.toFixed(4) + (m.fp16_check ? T(" (float16 weights: ", "（float16 权重：") + m.fp16_check.test_acc_fp16.toFixed(4) + T(")", "）") : ""),
       m.file + ", " + (m.bytes / 1024).toFixed(0) + " KiB, " + m.dtype]
        .forEach(function (v, i) { el("td", i ? { "class": "notranslate" } : {}, r, v); });   // data, as stored
      var status = el("td", { "class": "lab-status", "data-status": "loading" }, r, T("loading…", "加载中…"));
      ui["status-" + m.key] = status;
    });
    head.appendChild(el("th", {}, null, T("status", "状态")));
  }

  function buildPredict() {
    var box = $("lab-predict");
    var row = el("div", { "class": "lab-row" }, box);
    var left = el("div", { "class": "lab-col" }, row);
    ui.main = el("canvas", { id: "lab-canvas", width: N * SCALE, height: N * SCALE, "class": "lab-canvas",
                             "aria-label": T("the current image; draw on it with the mouse or a finger",
                                             "当前图像：可以用鼠标或手指在上面绘制") }, left);
    ui.caption = el("div", { id: "lab-caption", "class": "lab-caption" }, left);
    var tools = el("div", { "class": "lab-tools" }, left);
    var clear = el("button", { type: "button", id: "lab-clear" }, tools, T("Clear and draw your own", "清空，自己画一张"));
    el("label", { "for": "lab-brush" }, tools, T(" brush ", " 笔刷 "));
    ui.brush = el("input", { id: "lab-brush", type: "range", min: "0.6", max: "2.5", step: "0.1", value: "1.3" }, tools);
    clear.onclick = function () { lab.current.fill(0); lab.version++; setSource("drawing", null); refresh(); };
    var drawing = false;
    var paint = function (ev) {
      var p = pointerPixel(ui.main, ev), rad = +ui.brush.value;
      for (var y = Math.floor(p[1] - rad - 1); y <= p[1] + rad + 1; y++)
        for (var x = Math.floor(p[0] - rad - 1); x <= p[0] + rad + 1; x++) {
          if (x < 0 || y < 0 || x >= N || y >= N) continue;
          var d = Math.hypot(x + 0.5 - p[0], y + 0.5 - p[1]);
          var v = Math.max(0, Math.min(1, rad + 0.5 - d));
          if (v > lab.current[y * N + x]) lab.current[y * N + x] = v;
        }
      lab.version++;
      if (lab.source !== "drawing") setSource("drawing", null);
      refresh();
    };
    ui.main.addEventListener("pointerdown", function (ev) { drawing = true; ui.main.setPointerCapture(ev.pointerId); paint(ev); ev.preventDefault(); });
    ui.main.addEventListener("pointermove", function (ev) { if (drawing) paint(ev); });
    ui.main.addEventListener("pointerup", function () { drawing = false; });
    ui.main.addEventListener("pointercancel", function () { drawing = false; });

    var right = el("div", { "class": "lab-col lab-results" }, row);
    ui.results = {};
    modelKeys().forEach(function (key) {
      var m = modelOf(key);
      var card = el("div", { "class": "lab-result", "data-model": key }, right);
      el("div", { "class": "lab-result-title" }, card, title(m));
      if (m.flops) el("div", { "class": "lab-time" }, card, ZH
        ? thousands(m.params) + " 个参数，每张图像 " + (m.flops / 1e9).toFixed(m.flops < 1e8 ? 4 : 2) + " GFLOPs"
        : thousands(m.params) + " parameters, " + (m.flops / 1e9).toFixed(m.flops < 1e8 ? 4 : 2) + " GFLOPs per image");
      var time = el("div", { "class": "lab-time lab-result-time" }, card, lab.errors[key] ? "" : T("loading…", "加载中…"));
      var bars = el("div", { "class": "lab-bars" }, card);
      var rows = lab.manifest.classes.map(function (c, i) {
        var r = el("div", { "class": "lab-bar-row" }, bars);
        el("span", { "class": "lab-bar-label" }, r, cls(i));
        var track = el("span", { "class": "lab-bar-track" }, r);
        var fill = el("span", { "class": "lab-bar-fill" }, track);
        var val = el("span", { "class": "lab-bar-value" }, r, "");
        return { row: r, fill: fill, val: val };
      });
      ui.results[key] = { card: card, time: time, rows: rows };
    });

    el("div", { "class": "lab-subtitle" }, box, T("30 test images (click one):", "30 张测试图像（点击其中一张）："));
    var gallery = el("div", { "class": "lab-gallery", id: "lab-gallery" }, box);
    lab.images.pixels.forEach(function (px, i) {
      var c = el("canvas", { width: 56, height: 56, "data-index": i, "class": "lab-thumb",
                             title: T("test image ", "测试图像 ") + lab.images.index[i] + T(": ", "：") + cls(lab.images.label[i]) }, gallery);
      paintGray(c, px, N, N, 0, 255);
      c.onclick = function () { lab.select(i); };
    });
  }

  function buildOcclusion() {
    var box = $("lab-occlusion");
    var occ = lab.manifest.occlusion;
    var row = el("div", { "class": "lab-row" }, box);
    var left = el("div", { "class": "lab-col" }, row);
    ui.occ = el("canvas", { id: "lab-occ-canvas", width: N * SCALE, height: N * SCALE, "class": "lab-canvas",
                            "aria-label": T("drag the square over the image", "在图像上拖动方块") }, left);
    var ctl = el("div", { "class": "lab-col" }, row);
    ui.occModel = modelSelect(ctl, "lab-occ-model", function () { occUpdate(); });
    el("label", { "for": "lab-occ-class" }, ctl, T("true class ", "真实类别 "));
    ui.occClass = el("select", { id: "lab-occ-class" }, ctl);
    lab.manifest.classes.forEach(function (c, i) { el("option", { value: i }, ui.occClass, cls(i)); });
    ui.occClass.onchange = function () { lab.label = +ui.occClass.value; lab.labelChosen = true; occUpdate(); };
    ui.occText = el("div", { id: "lab-occ-prob", "class": "lab-occ-prob", "aria-live": "polite" }, ctl);
    var btn = el("button", { type: "button", id: "lab-occ-map-button" }, ctl, T("Compute the whole occlusion map", "计算完整的遮挡图"));
    ui.occMapInfo = el("div", { "class": "lab-time", id: "lab-occ-map-info", "aria-live": "polite" }, ctl);
    var np = Math.floor((N - occ.patch) / occ.stride) + 1;
    ui.occMap = el("canvas", { id: "lab-occ-map", width: np * 20, height: np * 20, "class": "lab-map",
                               "aria-label": T("occlusion map: probability of the true class at each position",
                                               "遮挡图：方块在每个位置时真实类别的概率") }, ctl);
    var legend = el("div", { "class": "lab-legend" }, ctl);
    el("span", {}, legend, "0 ");
    var bar = el("canvas", { width: 160, height: 10, "class": "lab-colorbar" }, legend);
    var bctx = bar.getContext("2d");
    for (var x = 0; x < 160; x++) { var c = magma(x / 159); bctx.fillStyle = "rgb(" + c + ")"; bctx.fillRect(x, 0, 1, 10); }
    el("span", {}, legend, T(" 1: probability of the true class with the square's top-left corner in that cell",
                             " 1：方块左上角位于该格时真实类别的概率"));
    btn.onclick = function () { lab.computeOcclusionMap(); };
    lab.occPos = [Math.floor((N - occ.patch) / 2), Math.floor((N - occ.patch) / 2)];
    var dragging = false;
    var move = function (ev) {
      var p = pointerPixel(ui.occ, ev);
      var clamp = function (v) { return Math.max(0, Math.min(N - occ.patch, Math.round(v - occ.patch / 2))); };
      lab.occPos = [clamp(p[1]), clamp(p[0])];
      occUpdate();
    };
    ui.occ.addEventListener("pointerdown", function (ev) { dragging = true; ui.occ.setPointerCapture(ev.pointerId); move(ev); ev.preventDefault(); });
    ui.occ.addEventListener("pointermove", function (ev) { if (dragging) move(ev); });
    ui.occ.addEventListener("pointerup", function () { dragging = false; });
    ui.occ.addEventListener("pointercancel", function () { dragging = false; });
  }

  function modelSelect(parent, id, onchange) {
    var wrap = el("div", { "class": "lab-model-select" }, parent);
    el("label", { "for": id }, wrap, T("net ", "网络 "));
    var s = el("select", { id: id }, wrap);
    modelKeys().forEach(function (k) { el("option", { value: k }, s, title(modelOf(k))); });
    var first = modelKeys().filter(function (k) { return !lab.errors[k]; })[0];
    if (first) s.value = first;
    s.onchange = onchange;
    return s;
  }

  function buildInside() {
    var box = $("lab-inside");
    ui.inModel = modelSelect(box, "lab-inside-model", function () { insideUpdate(); });
    ui.inMaps = el("div", { id: "lab-inside-maps" }, box);
  }

  // ---- updates -------------------------------------------------------------------------
  function setSource(source, i) {
    lab.source = source;
    lab.labelChosen = false;
    if (source === "test") {
      lab.label = lab.images.label[i];
      ui.caption.textContent = ZH ? "测试图像 " + lab.images.index[i] + "（真实类别：" + cls(lab.label) + "）"
                                  : "test image " + lab.images.index[i] + " (true class: " + cls(lab.label) + ")";
    } else {
      ui.caption.textContent = T("your drawing: choose its class under Occlusion", "你的绘图：请在“遮挡”下选择它的类别");
    }
    ui.occClass.value = lab.label;
    var thumbs = document.querySelectorAll(".lab-thumb");
    for (var k = 0; k < thumbs.length; k++) thumbs[k].classList.toggle("lab-selected", source === "test" && +thumbs[k].dataset.index === i);
  }

  lab.select = function (i) {
    var px = lab.images.pixels[i];
    for (var k = 0; k < N * N; k++) lab.current[k] = px[k] / 255;
    lab.version++;
    lab.selected = i;
    setSource("test", i);
    return refresh();
  };

  var pending = null, busy = false;
  function refresh() {
    // Coalesce: while one round of inference runs, only the latest image waits.
    paintGray(ui.main, lab.current, N, N, 0, 1);
    pending = { img: Float32Array.from(lab.current), version: lab.version };
    if (busy) return lab.lastRound;
    busy = true;
    lab.lastRound = (function loop() {
      var job = pending; pending = null;
      return predictAll(job.img, job.version).then(function () { return Promise.all([occUpdate(), insideUpdate()]); })
        .then(function () { if (pending) return loop(); busy = false; }, function (e) { busy = false; throw e; });
    })();
    return lab.lastRound;
  }

  function predictAll(img, version) {
    // In the manifest's order, so the small LeNets show first and the bigger net after them;
    // each net's outputs for this image are kept for Occlusion and Inside the net.
    return Promise.all(modelKeys().map(function (key) {
      var r = ui.results[key];
      if (notReady(key)) { if (!lab.errors[key]) r.time.textContent = T("loading…", "加载中…"); return null; }
      return run(key, img, 1, true).then(function (out) {
        lab.last[key] = { version: version, out: out };
        var probs = Array.from(out.probs);
        var top = probs.indexOf(Math.max.apply(null, probs));
        probs.forEach(function (p, c) {
          r.rows[c].fill.style.width = (100 * p).toFixed(2) + "%";
          r.rows[c].val.textContent = fmt(p);
          r.rows[c].row.classList.toggle("lab-top", c === top);
        });
        r.card.setAttribute("data-probs", JSON.stringify(probs));
        r.card.setAttribute("data-top", top);
        r.time.textContent = T("top: ", "最可能：") + cls(top) + " · " + out.ms.toFixed(1) + T(" ms in your browser", " ms（在你的浏览器中）");
        lab.timings[key] = out.ms;
        if (lab.source === "drawing" && !lab.labelChosen && key === ui.occModel.value) { lab.label = top; ui.occClass.value = top; }
        if (lab.firstPredictionMs === null) {
          lab.firstPredictionMs = performance.now();
          $("lab-predict").setAttribute("data-first-prediction-ms", lab.firstPredictionMs.toFixed(0));
        }
      }, function (e) { r.time.textContent = String(e.message || e); });
    }));
  }

  function occluded(img, top, left) {
    var occ = lab.manifest.occlusion, x = Float32Array.from(img);
    for (var y = top; y < top + occ.patch; y++)
      for (var c = left; c < left + occ.patch; c++) x[y * N + c] = occ.fill;
    return x;
  }

  // The outputs of `key` for the current image: those of the last round if it saw this image,
  // else a fresh call (every output).
  function currentOutputs(key) {
    var hit = lab.last[key];
    if (hit && hit.version === lab.version) return Promise.resolve(hit.out);
    var version = lab.version;
    return run(key, Float32Array.from(lab.current), 1, true).then(function (out) {
      lab.last[key] = { version: version, out: out };
      return out;
    });
  }

  function occUpdate() {
    var key = ui.occModel.value, occ = lab.manifest.occlusion, pos = lab.occPos;
    var img = lab.current, x = occluded(img, pos[0], pos[1]);
    paintGray(ui.occ, x, N, N, 0, 1);
    var ctx = ui.occ.getContext("2d");
    ctx.strokeStyle = "#888"; ctx.lineWidth = 3;
    ctx.strokeRect(pos[1] * SCALE + 1.5, pos[0] * SCALE + 1.5, occ.patch * SCALE - 3, occ.patch * SCALE - 3);
    if (notReady(key)) { ui.occText.textContent = notReady(key); return Promise.resolve(); }
    return Promise.all([currentOutputs(key), run(key, x, 1)]).then(function (both) {
      var c = lab.label, p0 = both[0].probs[c], p1 = both[1].probs[c];
      ui.occText.textContent = ZH
        ? "p(" + cls(c) + ")：未遮挡时 " + fmt(p0) + "，方块在第 " + pos[0] + " 行、第 " + pos[1] + " 列时 " + fmt(p1) +
          "（" + both[1].ms.toFixed(1) + " ms）"
        : "p(" + cls(c) + "): " + fmt(p0) + " unoccluded, " + fmt(p1) +
          " with the square at row " + pos[0] + ", column " + pos[1] + " (" + both[1].ms.toFixed(1) + " ms)";
      ui.occText.setAttribute("data-prob", p1);
    }, function (e) { ui.occText.textContent = String(e.message || e); });
  }

  var mapToken = 0;
  lab.computeOcclusionMap = function () {
    // In batches of the model's occlusion_batch (all at once for the LeNets, a row of the map
    // at a time for VGG): the map fills in row by row, and drawing stays live in between.
    var key = ui.occModel.value, m = modelOf(key), occ = lab.manifest.occlusion;
    var img = Float32Array.from(lab.current), label = lab.label, token = ++mapToken;
    if (notReady(key)) { ui.occMapInfo.textContent = notReady(key); return Promise.resolve(null); }
    var positions = [];
    for (var p = 0; p + occ.patch <= N; p += occ.stride) positions.push(p);
    var np = positions.length, total = np * np, per = Math.max(1, Math.min(total, m.occlusion_batch || total));
    var ctx = ui.occMap.getContext("2d"), cell = ui.occMap.width / np, map = [], ms = 0, t0 = performance.now();
    ui.occMap.removeAttribute("data-map");
    ctx.fillStyle = "#ddd"; ctx.fillRect(0, 0, ui.occMap.width, ui.occMap.height);
    ui.occMapInfo.textContent = ZH ? "正在计算 " + total + " 个位置…" : "computing " + total + " positions…";
    function chunk(start) {
      if (token !== mapToken) return Promise.resolve(null);   // a newer map was asked for
      if (start >= total) return Promise.resolve(map);
      var n = Math.min(per, total - start), batch = new Float32Array(n * N * N);
      for (var i = 0; i < n; i++) {
        var k = start + i;
        batch.set(occluded(img, positions[Math.floor(k / np)], positions[k % np]), i * N * N);
      }
      return run(key, batch, n).then(function (out) {
        ms += out.ms;
        for (var i = 0; i < n; i++) {
          var k = start + i, v = out.probs[i * 10 + label], c = magma(v);
          map.push(v);
          ctx.fillStyle = "rgb(" + c + ")";
          ctx.fillRect((k % np) * cell, Math.floor(k / np) * cell, cell, cell);
        }
        if (start + n < total && token === mapToken)
          ui.occMapInfo.textContent = ZH
            ? "正在计算：" + total + " 个位置中已完成 " + (start + n) + " 个，已用时 " + (performance.now() - t0).toFixed(0) + " ms…"
            : "computing: " + (start + n) + " of " + total + " positions, " + (performance.now() - t0).toFixed(0) + " ms so far…";
        return pause().then(function () { return chunk(start + n); });
      });
    }
    return chunk(0).then(function (done) {
      if (!done) return null;
      ui.occMap.setAttribute("data-map", JSON.stringify(map));
      ui.occMap.setAttribute("data-model", key);
      ui.occMap.setAttribute("data-label", label);
      ui.occMap.setAttribute("data-ms", ms.toFixed(0));
      var lo = Math.min.apply(null, map);
      ui.occMapInfo.textContent = ZH
        ? np + " × " + np + " 个位置（" + occ.patch + " px 方块，步幅 " + occ.stride + "），用时 " + ms.toFixed(0) + " ms" +
          (per < total ? "（" + Math.ceil(total / per) + " 批，每批 " + per + " 个）" : "") + "；p(" + cls(label) + ") 最低为 " + fmt(lo)
        : np + " × " + np + " positions (" + occ.patch + " px square, stride " + occ.stride +
          ") in " + ms.toFixed(0) + " ms" + (per < total ? " (" + Math.ceil(total / per) + " batches of " + per + ")" : "") +
          "; lowest p(" + cls(label) + ") " + fmt(lo);
      return map;
    }, function (e) { ui.occMapInfo.textContent = String(e.message || e); return null; });
  };

  function insideUpdate() {
    var key = ui.inModel.value, box = ui.inMaps;
    if (notReady(key)) {
      box.innerHTML = "";
      el("div", lab.errors[key] ? { "class": "lab-error", role: "alert" } : { "class": "lab-time" }, box, notReady(key));
      return Promise.resolve();
    }
    return currentOutputs(key).then(function (out) {
      if (ui.inModel.value !== key) return;   // another net was chosen meanwhile
      box.innerHTML = "";
      box.setAttribute("data-model", key);
      tapsOf(modelOf(key)).forEach(function (tap) {
        // The labels come from each tensor's own shape, so any net's maps are named right.
        var t = out.maps[tap.name], dims = t.dims, C = dims[1], H = dims[2], W = dims[3];
        var size = Math.max(60, Math.min(112, 3 * W));
        el("div", { "class": "lab-subtitle" }, box, ZH ? tapLabel(tap) + "：" + C + " 张特征图，" + H + " × " + W
                                                       : tap.label + ": " + C + " maps, " + H + " × " + W);
        var maps = el("div", { "class": "lab-maps", id: "lab-" + tap.name, "data-shape": dims.join("x") }, box);
        for (var c = 0; c < C; c++) {
          var r = range(t.data, c * H * W, H * W);
          var fig = el("figure", { "class": "lab-map-fig" }, maps);
          var cv = el("canvas", { width: size, height: size, "data-channel": c }, fig);
          paintGray(cv, t.data.subarray(c * H * W, (c + 1) * H * W), W, H, r[0], r[1]);
          el("figcaption", {}, fig, c + ": " + r[0].toFixed(2) + "…" + r[1].toFixed(2));
        }
      });
    });
  }

  // ---- start -----------------------------------------------------------------------------
  function fail(text) {
    ["lab-runs", "lab-predict", "lab-occlusion", "lab-inside"].forEach(function (id) {
      var b = $(id); if (b) { b.innerHTML = ""; showError(b, text); }
    });
    lab.fatal = text;
  }

  function settled(key) {
    // A model has loaded or failed: say so in the table and its card, and predict with it.
    var s = ui["status-" + key], err = lab.errors[key];
    s.textContent = err ? T("failed", "失败") : T("ready", "就绪"); s.setAttribute("data-status", err ? "error" : "ready");
    if (err) {
      showError($("lab-runs"), err);
      var r = ui.results[key]; r.time.textContent = ""; showError(r.card, err);
      [ui.occModel, ui.inModel].forEach(function (sel) {
        var ok = modelKeys().filter(function (k) { return !lab.errors[k]; })[0];
        if (sel.value === key && ok) sel.value = ok;
      });
    }
    // The first model to settle shows the first test image (unless the reader is already
    // drawing); each later one joins in.
    if (!lab.started) { lab.started = true; if (!lab.source) return lab.select(0); }
    return refresh();
  }

  lab.ready = Promise.all([fetchOk(base + "models/manifest.json", "json"), fetchOk(base + "images.json", "json")])
    .then(function (got) {
      lab.manifest = got[0]; lab.images = got[1];
      mark("manifest");
      buildAbout(); buildRuns(); buildPredict(); buildOcclusion(); buildInside();
      // The small files are fetched at once, a big one (VGG's 4 MB, checked by SHA-256) once
      // the first net has settled; the sessions are made one after the other in the manifest's
      // order (the LeNets first), each followed by a prediction, so the first prediction does
      // not wait for the bigger net.
      var chain = Promise.resolve(), first = null;
      var loads = lab.manifest.models.map(function (m) {
        var bytes = (first && m.bytes > 1e6) ? first.then(function () { return fetchModel(m); }) : fetchModel(m);
        bytes.catch(function () {});
        chain = chain.then(function () {
          return bytes.then(function (buf) { return createSession(m, buf); })
            .then(function (s) { lab.models[m.key] = s; },
                  function (e) { lab.errors[m.key] = T("The model “" + m.title + "” could not be loaded: ",
                                                       "模型“" + title(m) + "”无法加载：") + (e && e.message || e); })
            .then(function () { return { round: settled(m.key) }; });   // the round runs on; the next model is queued
        });
        if (!first) first = chain;
        return chain.then(function (r) { return r.round; });
      });
      return Promise.all(loads);
    }, function (e) {
      fail(T("The lab could not load its files: ", "实验页无法加载它的文件：") + (e && e.message || e) +
           T(". Rebuild the site with `make book` (book/_ext/lab_build.py copies them).",
             "。请用 `make book` 重新构建网站（book/_ext/lab_build.py 会复制这些文件）。"));
      throw e;
    })
    .then(function () { return lab.lastRound; });
  lab.ready.catch(function () {});
})();
