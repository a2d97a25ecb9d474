// Compiles the test contracts of this directory with solc-js (standard JSON, optimizer on) and
// prints {"solcVersion": "...", "contracts": {"<Contract>": {"abi": [...], "bytecode": "0x..."}}}
// on stdout (the contracts the tests deploy: DEPLOYED). Writes no files; exits 1 with solc's errors on
// stderr.
// Usage: node tests/contracts/compile.js   (solc comes from the repository's node_modules)
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

// Only the contracts the tests deploy get bytecode (solc then skips code generation for the rest).
const DEPLOYED = {
  "Coordinator.sol": ["EIP712Coordinator"],
  "Consumer.sol": ["Consumer"],
  // Infernet v1 stand-ins: what the start-up protocol probe reads.
  "Registry.sol": ["Registry"],
  "V1CoordinatorStub.sol": ["V1CoordinatorStub"],
};
const SOURCES = Object.keys(DEPLOYED);

const input = {
  language: "Solidity",
  sources: Object.fromEntries(
    SOURCES.map((name) => [name, { content: fs.readFileSync(path.join(__dirname, name), "utf8") }]),
  ),
  settings: {
    optimizer: { enabled: true, runs: 200 },
    outputSelection: Object.fromEntries(
      Object.entries(DEPLOYED).map(([file, names]) => [
        file,
        Object.fromEntries(names.map((name) => [name, ["abi", "evm.bytecode.object"]])),
      ]),
    ),
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length > 0) {
  process.stderr.write(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const result = { solcVersion: solc.version(), contracts: {} };
for (const file of Object.keys(output.contracts)) {
  for (const [name, contract] of Object.entries(output.contracts[file])) {
    result.contracts[name] = { abi: contract.abi, bytecode: "0x" + contract.evm.bytecode.object };
  }
}
process.stdout.write(JSON.stringify(result));
