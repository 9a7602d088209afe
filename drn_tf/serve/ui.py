"""The page ``drn serve`` answers at ``/``: pick an image and a model, see before/after with a slider,
download the result. Plain HTML and JavaScript; it talks to the server through the V1 API
(``upscale_bytes``), like any other client, and lists the models from ``/ui/models``."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DRN super-resolution</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 [hidden]{display:none!important}
 body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
 fieldset{border:1px solid #ccc;padding:1rem;display:flex;gap:1rem;flex-wrap:wrap;align-items:center}
 #status{margin:.8rem 0;min-height:1.4em} .error{color:#b00}
 #result{display:inline-block;max-width:100%} #slider{display:block;width:100%;margin:0 0 .4rem}
 #compare{position:relative;overflow:hidden;user-select:none}
 #compare img{display:block;max-width:100%;height:auto}
 #before{position:absolute;top:0;left:0;width:100%;height:100%;clip-path:inset(0 50% 0 0);image-rendering:pixelated}
 #bar{position:absolute;top:0;bottom:0;left:50%;width:2px;background:#fff;box-shadow:0 0 3px #000;pointer-events:none}
 .label{position:absolute;top:.4rem;background:#0008;color:#fff;padding:.1rem .4rem;font-size:.8rem}
</style></head><body>
<h1>DRN super-resolution</h1>
<fieldset>
 <label>Image <input type="file" id="file" accept="image/*"></label>
 <label>Model <select id="model"></select></label>
 <button id="go" disabled>Upscale</button>
 <a id="download" download hidden>Download PNG</a>
</fieldset>
<div id="status"></div>
<div id="result" hidden>
<input type="range" id="slider" min="0" max="100" value="50" aria-label="before / after split">
<div id="compare">
 <img id="after" alt="upscaled"><img id="before" alt="input, enlarged by the browser">
 <div id="bar"></div><span class="label" style="left:.4rem">before</span><span class="label" style="right:.4rem">after</span>
</div>
</div>
<script>
const $ = id => document.getElementById(id);
let limits = {};
function status(text, error) { $("status").textContent = text; $("status").className = error ? "error" : ""; }
fetch("ui/models").then(r => r.json()).then(info => {
  limits = info;
  for (const m of info.models) {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = `${m.name} (x${m.scale}` + (new Set(info.models.map(x => x.runtime)).size > 1 ? `, ${m.runtime})` : ")");
    $("model").appendChild(o);
  }
}).catch(e => status("cannot list the models: " + e, true));
$("file").onchange = () => { $("go").disabled = !$("file").files.length; };
$("slider").oninput = () => {
  const v = $("slider").value;
  $("before").style.clipPath = `inset(0 ${100 - v}% 0 0)`; $("bar").style.left = v + "%";
};
function base64(buffer) {
  let s = ""; const b = new Uint8Array(buffer);
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
  return btoa(s);
}
let urls = [];
$("go").onclick = async () => {
  const file = $("file").files[0], model = $("model").value;
  if (limits.max_body_bytes && file.size * 4 / 3 > limits.max_body_bytes) {
    return status(`${file.name} is too large for this server (${limits.max_body_bytes} bytes per request)`, true);
  }
  $("go").disabled = true; status(`upscaling ${file.name} with ${model} ...`);
  $("result").hidden = $("download").hidden = true;  // no earlier result next to this request's status
  urls.forEach(u => URL.revokeObjectURL(u));
  const t0 = performance.now();
  try {
    const body = JSON.stringify({signature_name: "upscale_bytes", instances: [{b64: base64(await file.arrayBuffer())}]});
    const r = await fetch(`v1/models/${encodeURIComponent(model)}:predict`, {method: "POST", body,
                          headers: {"content-type": "application/json"}});
    const text = await r.text();
    let answer;
    try { answer = JSON.parse(text); } catch (e) { throw new Error(`${r.status} ${r.statusText}: ${text.slice(0, 200)}`); }
    if (!r.ok) throw new Error(answer.error || `${r.status} ${r.statusText}`);
    const png = Uint8Array.from(atob(answer.predictions[0].b64), c => c.charCodeAt(0));
    urls = [URL.createObjectURL(new Blob([png], {type: "image/png"})), URL.createObjectURL(file)];
    $("after").onload = () => status(`${file.name}: ${$("after").naturalWidth}x${$("after").naturalHeight} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    $("after").src = urls[0]; $("before").src = urls[1];
    $("download").href = urls[0]; $("download").download = file.name.replace(/\\.[^.]*$/, "") + `_${model}.png`;
    $("download").hidden = $("result").hidden = false;
  } catch (e) { status(e.message, true); }
  $("go").disabled = false;
};
</script></body></html>
"""
