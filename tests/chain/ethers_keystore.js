// A second keystore implementation for tests/chain/test_keystore_interop.py (npm ethers v6).
//   node ethers_keystore.js decrypt FILE   prints the address of the key in FILE
//   node ethers_keystore.js encrypt FILE   writes a new random wallet to FILE, prints its address
// The passphrase comes from the KEYSTORE_PASSPHRASE environment variable, never argv.
'use strict';
const fs = require('fs');
const path = require('path');
const { ethers } = require(path.resolve(__dirname, '..', '..', 'node_modules', 'ethers'));

const [mode, file] = process.argv.slice(2);
const passphrase = process.env.KEYSTORE_PASSPHRASE || '';
if (mode === 'decrypt') {
  const account = ethers.decryptKeystoreJsonSync(fs.readFileSync(file, 'utf8'), passphrase);
  console.log(account.address);
} else if (mode === 'encrypt') {
  const wallet = ethers.Wallet.createRandom();
  const json = ethers.encryptKeystoreJsonSync(
    { address: wallet.address, privateKey: wallet.privateKey },
    passphrase,
    { scrypt: { N: 1 << 12 } },
  );
  fs.writeFileSync(file, json, { mode: 0o600 });
  console.log(wallet.address);
} else {
  console.error('usage: ethers_keystore.js decrypt|encrypt FILE');
  process.exit(2);
}
