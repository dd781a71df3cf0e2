#!/usr/bin/env node
// Test vectors for files written by the previous backup tool (`.sql.enc`).
//
// Encrypts with Node's own crypto module, following the previous tool's code
// exactly (getEncryptionKey, encryptBackupFile), only on buffers instead of
// files; then checks each vector with the previous tool's decryptBackupFile
// logic: valid vectors must decrypt to the expected bytes, the others must
// throw. Writes the *.sql.enc files and manifest.json beside this script.
// IVs and salts are random, as in the previous tool, so every run differs.
//
// Usage: node tests/vectors/legacy/generate.js
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const OUT = __dirname;

// --- the previous tool's code (backend/src/utils/backup.js) -----------------

function getEncryptionKey(key) {
  // The old code read process.env.BACKUP_ENCRYPTION_KEY; here it is a parameter.
  if (!key) return null;

  // Accept hex key OR derive from passphrase
  if (key.length === 64 && /^[0-9a-fA-F]+$/.test(key)) {
    return Buffer.from(key, 'hex');
  }

  const salt = crypto.createHash('sha256')
    .update('ediscovery-backup-salt')
    .digest();
  return crypto.pbkdf2Sync(key, salt, 100000, 32, 'sha256');
}

function encryptBackup(inputData, setting) {
  const encryptionKey = getEncryptionKey(setting);
  const iv = crypto.randomBytes(16);
  const salt = crypto.randomBytes(32);
  const cipher = crypto.createCipheriv('aes-256-gcm', encryptionKey, iv);
  const encryptedData = Buffer.concat([
    cipher.update(inputData),
    cipher.final()
  ]);
  const authTag = cipher.getAuthTag();
  return Buffer.concat([salt, iv, authTag, encryptedData]);
}

function decryptBackup(encryptedData, setting) {
  const iv = encryptedData.slice(32, 48);
  const authTag = encryptedData.slice(48, 64);
  const data = encryptedData.slice(64);
  const decipher = crypto.createDecipheriv('aes-256-gcm', getEncryptionKey(setting), iv);
  decipher.setAuthTag(authTag);
  return Buffer.concat([
    decipher.update(data),
    decipher.final() // Throws if auth tag verification fails
  ]);
}

// --- plaintexts and keys -----------------------------------------------------

// Deterministic bytes: SHA-256("legacy vector <label> <i>") for i = 0, 1, ...
function pattern(label, length) {
  const parts = [];
  for (let i = 0, have = 0; have < length; i++, have += 32) {
    parts.push(crypto.createHash('sha256').update(`legacy vector ${label} ${i}`).digest());
  }
  return Buffer.concat(parts).subarray(0, length);
}

const SQL = Buffer.from(
  '-- PostgreSQL database dump\n' +
  "COPY public.notes (id, body) FROM stdin;\n" +
  '1\tline one\\nline two\ttab\\\\backslash\n' +
  '2\tnon-ASCII: é ü ß 日本語 🎉\n' +
  '3\t\\N\n' +
  '\\.\n', 'utf8');

const HEX_KEY = '3b5f0c8e2a91d4476e0fb2c1d8a95e74102f6b3c9d8e7a6541b2c3d4e5f60718';
const HEX_KEY_UPPER = 'A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90';
const OTHER_HEX_KEY = '9bc26789b9ecc1604786e33c6859cd3d321057fc379eea737f55c51ff6f061d4';
const PASSPHRASE = 'correct horse battery staple — ünïcødé';
const HEX_LIKE_PASSPHRASE = HEX_KEY.slice(0, 63); // 63 hex digits: a passphrase, not a key
const LARGE = 3 * 1024 * 1024 - 64 - 1000; // the file stays under 3 MiB

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

function flip(buf, offset) {
  const copy = Buffer.from(buf);
  copy[offset] ^= 0x01;
  return copy;
}

// --- the vectors ---------------------------------------------------------------

function build() {
  const vectors = [];
  const valid = (file, setting, plaintext, comment) => {
    const data = encryptBackup(plaintext, setting);
    vectors.push({ file, setting, plaintext, data, expect: 'ok', comment });
    return data;
  };
  const invalid = (file, setting, data, expect, comment) => {
    vectors.push({ file, setting, plaintext: null, data, expect, comment });
  };

  const sql = valid('hex-key.sql.enc', HEX_KEY, SQL, 'a small SQL dump under a 64-hex key');
  valid('hex-key-upper.sql.enc', HEX_KEY_UPPER, SQL, 'upper-case hex digits are a key too');
  valid('passphrase.sql.enc', PASSPHRASE, SQL, 'a non-ASCII passphrase, PBKDF2 over its UTF-8 bytes');
  valid('hex-like-passphrase.sql.enc', HEX_LIKE_PASSPHRASE, SQL, '63 hex digits: a passphrase, not a key');
  valid('empty-hex-key.sql.enc', HEX_KEY, Buffer.alloc(0), 'empty dump: the file is the 64-byte header');
  valid('empty-passphrase.sql.enc', PASSPHRASE, Buffer.alloc(0), 'empty dump under a passphrase');
  valid('one-byte-hex-key.sql.enc', HEX_KEY, Buffer.from('x'), 'one byte');
  valid('one-byte-passphrase.sql.enc', PASSPHRASE, Buffer.from([0xff]), 'one byte, not UTF-8');
  valid('large-passphrase.sql.enc', PASSPHRASE, pattern('large', LARGE), 'almost 3 MiB, more than one read buffer');
  const medium = valid('medium-hex-key.sql.enc', HEX_KEY, pattern('medium', 100000), '100000 bytes');
  valid('salt-changed.sql.enc', HEX_KEY, SQL, 'salt bytes are not authenticated');
  const salted = vectors[vectors.length - 1];
  salted.data = flip(salted.data, 5);
  salted.comment = 'a changed salt byte: the salt is unused, so the previous tool opens it too';

  invalid('tampered-ciphertext.sql.enc', HEX_KEY, flip(medium, 64 + 50000), 'auth-failure',
    'medium-hex-key with one ciphertext bit flipped');
  invalid('tampered-tag.sql.enc', HEX_KEY, flip(medium, 48 + 7), 'auth-failure', 'one tag bit flipped');
  invalid('tampered-iv.sql.enc', HEX_KEY, flip(medium, 32 + 3), 'auth-failure', 'one IV bit flipped');
  invalid('tampered-last-byte.sql.enc', HEX_KEY, flip(sql, sql.length - 1), 'auth-failure',
    'the last ciphertext byte flipped');
  invalid('truncated.sql.enc', HEX_KEY, medium.subarray(0, medium.length - 1), 'auth-failure',
    'medium-hex-key without its last byte');
  invalid('truncated-mid.sql.enc', HEX_KEY, medium.subarray(0, 64 + 65536), 'auth-failure',
    'medium-hex-key cut after 64 KiB of ciphertext');
  invalid('truncated-to-header.sql.enc', HEX_KEY, medium.subarray(0, 64), 'auth-failure',
    'only the 64-byte header of a non-empty file');
  invalid('truncated-header.sql.enc', HEX_KEY, medium.subarray(0, 40), 'too-short',
    'cut inside the 64-byte header');
  invalid('extended.sql.enc', HEX_KEY, Buffer.concat([sql, Buffer.from([0])]), 'auth-failure',
    'hex-key with one byte appended');
  const wrong = encryptBackup(SQL, OTHER_HEX_KEY);
  invalid('wrong-key.sql.enc', HEX_KEY, wrong, 'auth-failure', 'sealed under another key than the one listed');
  invalid('wrong-passphrase.sql.enc', PASSPHRASE, encryptBackup(SQL, 'not the listed passphrase'), 'auth-failure',
    'sealed under another passphrase than the one listed');
  return vectors;
}

function check(v) {
  if (v.data.length < 64) return; // the previous tool read garbage here; too short for any decoder
  let out;
  try {
    out = decryptBackup(v.data, v.setting);
  } catch (e) {
    if (v.expect === 'ok') throw new Error(`${v.file}: the previous tool cannot open it: ${e.message}`);
    return;
  }
  if (v.expect !== 'ok') throw new Error(`${v.file}: the previous tool opens it`);
  if (!out.equals(v.plaintext)) throw new Error(`${v.file}: wrong plaintext`);
}

function main() {
  const vectors = build();
  vectors.forEach(check);
  const manifest = {
    comment: 'Files in the previous backup tool\'s format, made by generate.js with Node\'s crypto. ' +
      '"setting" is the BACKUP_ENCRYPTION_KEY value; "aes_key" the AES-256 key it means ' +
      '(64 hex digits: the key itself; else PBKDF2-HMAC-SHA256, 100000 iterations, ' +
      'salt SHA-256("ediscovery-backup-salt")). "expect": ok (opens to the plaintext ' +
      'described), auth-failure (the tag does not verify under that key), too-short ' +
      '(less than the 64-byte header).',
    node: process.version,
    vectors: vectors.map((v) => ({
      file: v.file,
      setting: v.setting,
      setting_kind: v.setting.length === 64 && /^[0-9a-fA-F]+$/.test(v.setting) ? 'hex-key' : 'passphrase',
      aes_key: getEncryptionKey(v.setting).toString('hex'),
      expect: v.expect,
      file_bytes: v.data.length,
      plaintext_bytes: v.plaintext ? v.plaintext.length : null,
      plaintext_sha256: v.plaintext ? sha256(v.plaintext) : null,
      comment: v.comment,
    })),
  };
  for (const v of vectors) fs.writeFileSync(path.join(OUT, v.file), v.data);
  fs.writeFileSync(path.join(OUT, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  console.log(`wrote ${vectors.length} vectors and manifest.json to ${OUT}`);
}

main();
