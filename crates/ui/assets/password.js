// Clone passwords: a generator from the browser's CSPRNG and an entropy estimate for the hint.

const ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.";

export function generate(length = 24) {
  const out = [];
  const limit = 256 - (256 % ALPHABET.length); // rejection sampling: no bias toward early letters
  while (out.length < length) {
    for (const byte of crypto.getRandomValues(new Uint8Array(length * 2))) {
      if (byte < limit && out.length < length) out.push(ALPHABET[byte % ALPHABET.length]);
    }
  }
  return out.join("");
}

// Bits of a password drawn at random from the character classes it uses: an upper bound,
// since a chosen word is far weaker than its letters suggest.
export function entropyBits(password) {
  if (!password) return 0;
  let pool = 0;
  if (/[a-z]/.test(password)) pool += 26;
  if (/[A-Z]/.test(password)) pool += 26;
  if (/[0-9]/.test(password)) pool += 10;
  if (/[^a-zA-Z0-9]/.test(password)) pool += 33;
  return Math.round(password.length * Math.log2(pool));
}

export function hint(password) {
  const bits = entropyBits(password);
  if (!password) return "Required; use Generate for a strong one.";
  const verdict = bits < 40 ? "weak" : bits < 64 ? "fair" : bits < 100 ? "strong" : "very strong";
  return `About ${bits} bits at most: ${verdict}.`;
}
