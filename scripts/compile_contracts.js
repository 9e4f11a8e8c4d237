#!/usr/bin/env node
// Compile chain/contracts/*.sol with the pinned npm solc and write ABI + bytecode to
// assets/contracts/<Name>.json, so the Python side needs no compiler.
//   node scripts/compile_contracts.js           write the artifacts
//   node scripts/compile_contracts.js --check   exit 1 if the committed artifacts differ
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const ROOT = path.resolve(__dirname, '..');
const SRC = path.join(ROOT, 'chain', 'contracts');
const OUT = path.join(ROOT, 'assets', 'contracts');
// py-evm (the in-process chain) supports forks up to prague; solc 0.8.37 defaults to osaka.
const EVM_VERSION = 'cancun';
const EXPECTED_SOLC = '0.8.37';

function compile() {
  const sources = {};
  for (const name of fs.readdirSync(SRC).sort()) {
    if (name.endsWith('.sol')) sources[name] = { content: fs.readFileSync(path.join(SRC, name), 'utf8') };
  }
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: { enabled: true, runs: 200 },
      // No metadata hash: artifacts then depend only on the sources, not on file paths.
      metadata: { bytecodeHash: 'none' },
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  if (errors.length) {
    for (const e of errors) console.error(e.formattedMessage);
    process.exit(2);
  }
  const artifacts = {};
  for (const file of Object.keys(output.contracts)) {
    for (const [name, c] of Object.entries(output.contracts[file])) {
      if (!c.evm.bytecode.object) continue; // interfaces and abstract contracts
      artifacts[name] = {
        contractName: name,
        source: `chain/contracts/${file}`,
        compiler: { solc: solc.version(), evmVersion: EVM_VERSION, optimizerRuns: 200 },
        abi: c.abi,
        bytecode: '0x' + c.evm.bytecode.object,
      };
    }
  }
  return artifacts;
}

function main() {
  if (!solc.version().startsWith(EXPECTED_SOLC + '+')) {
    console.error(`solc ${solc.version()} found, ${EXPECTED_SOLC} pinned: run npm ci`);
    process.exit(2);
  }
  const artifacts = compile();
  const check = process.argv.includes('--check');
  let differ = 0;
  const wanted = new Set(Object.keys(artifacts).map((n) => `${n}.json`));
  if (!check) fs.mkdirSync(OUT, { recursive: true });
  for (const [name, artifact] of Object.entries(artifacts)) {
    const file = path.join(OUT, `${name}.json`);
    const text = JSON.stringify(artifact, null, 1) + '\n';
    const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
    if (old === text) continue;
    differ++;
    if (check) console.error(`${path.relative(ROOT, file)} differs from a fresh compile`);
    else fs.writeFileSync(file, text);
  }
  for (const stale of fs.existsSync(OUT) ? fs.readdirSync(OUT) : []) {
    if (stale.endsWith('.json') && !wanted.has(stale)) {
      differ++;
      if (check) console.error(`assets/contracts/${stale} has no source`);
      else fs.unlinkSync(path.join(OUT, stale));
    }
  }
  const sizes = Object.entries(artifacts).map(([n, a]) => `${n} ${(a.bytecode.length - 2) / 2} B`);
  console.log(`${check ? 'checked' : 'compiled'} with solc ${solc.version()} (${EVM_VERSION}): ${sizes.join(', ')}`);
  if (check && differ) process.exit(1);
}

main();
