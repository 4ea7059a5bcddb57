// Images and players for item bytes and local files.

export function mediaElement(modality, src, alt) {
  if (modality === "audio") {
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.src = src;
    audio.setAttribute("aria-label", alt);
    return audio;
  }
  const img = document.createElement("img");
  img.src = src;
  img.alt = alt;
  return img;
}

// PGM is no format browsers draw: a local PGM is decoded here for the preview.
async function pgmAsDataUrl(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const tokens = [];
  let i = 0;
  while (tokens.length < 4) {
    while (/\s/.test(String.fromCharCode(bytes[i]))) i++;
    if (bytes[i] === 35) { // '#': a comment to the end of the line
      while (bytes[i] !== 10) i++;
      continue;
    }
    let token = "";
    while (!/\s/.test(String.fromCharCode(bytes[i]))) token += String.fromCharCode(bytes[i++]);
    tokens.push(token);
  }
  i++;
  const [magic, width, height, maxval] = [tokens[0], +tokens[1], +tokens[2], +tokens[3]];
  if (magic !== "P5" || maxval > 255) return null;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  for (let p = 0; p < width * height; p++) {
    const v = Math.round((bytes[i + p] * 255) / maxval);
    image.data.set([v, v, v, 255], p * 4);
  }
  context.putImageData(image, 0, 0);
  return canvas.toDataURL("image/png");
}

export async function fileUrl(file) {
  if (/\.pgm$/i.test(file.name) || file.type === "image/x-portable-graymap") {
    const url = await pgmAsDataUrl(file);
    if (url) return url;
  }
  return URL.createObjectURL(file);
}

export function fileModality(file) {
  return file.type.startsWith("audio/") || /\.wav$/i.test(file.name) ? "audio" : "face";
}

// The detected face's box, drawn over the image in the image's displayed scale.
export function drawBox(frame, img, box) {
  const place = () => {
    frame.querySelector(".face-box")?.remove();
    if (!img.naturalWidth) return;
    const scale = img.clientWidth / img.naturalWidth;
    const mark = document.createElement("div");
    mark.className = "face-box";
    mark.setAttribute("aria-hidden", "true");
    Object.assign(mark.style, {
      left: `${box.left * scale}px`,
      top: `${box.top * scale}px`,
      width: `${box.width * scale}px`,
      height: `${box.height * scale}px`,
    });
    frame.append(mark);
  };
  if (img.complete) place();
  else img.addEventListener("load", place, { once: true });
}

// Lets a file be dropped on a .drop area as well as picked.
export function acceptDrops(area, input, onFile) {
  area.addEventListener("dragover", (event) => {
    event.preventDefault();
    area.classList.add("over");
  });
  area.addEventListener("dragleave", () => area.classList.remove("over"));
  area.addEventListener("drop", (event) => {
    event.preventDefault();
    area.classList.remove("over");
    if (event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      onFile(input.files[0]);
    }
  });
  input.addEventListener("change", () => input.files[0] && onFile(input.files[0]));
}
