#!/usr/bin/env node
// Reads jest's --json reports and fails unless every suite ran and passed, nothing was skipped,
// and the kernel suites (root, bpftrace, namespaces) are all there.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

function kernelTestFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return kernelTestFiles(path);
    return entry.name.endsWith('.kernel.test.ts') ? [path] : [];
  });
}

let passed = 0;
let failed = 0;
const problems = [];
for (const file of process.argv.slice(2)) {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  passed += report.numPassedTests;
  failed += report.numFailedTests + report.numRuntimeErrorTestSuites;
  if (report.numPendingTests + report.numTodoTests > 0) {
    problems.push(`${file}: ${report.numPendingTests + report.numTodoTests} tests skipped or todo`);
  }
  if (report.numTotalTests === 0) problems.push(`${file}: no test ran`);
  if (file.includes('kernel')) {
    const expected = kernelTestFiles('test').length;
    if (report.numTotalTestSuites !== expected) {
      problems.push(`${file}: ${report.numTotalTestSuites} kernel suites ran, ${expected} exist`);
    }
  }
}
for (const problem of problems) console.error(`check-test-report: ${problem}`);
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(problems.length > 0 || failed > 0 ? 1 : 0);
