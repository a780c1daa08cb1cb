// Two projects: `unit` needs nothing but Node; `kernel` needs root, bpftrace and
// network namespaces, and runs in band because its tests share one kernel.
const common = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }] },
};

export default {
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: ['<rootDir>/test/**/*.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', '\\.kernel\\.test\\.ts$'],
    },
    {
      ...common,
      displayName: 'kernel',
      testMatch: ['<rootDir>/test/**/*.kernel.test.ts'],
      setupFiles: ['<rootDir>/test/support/require-root.ts'],
      setupFilesAfterEnv: ['<rootDir>/test/support/kernel-timeout.ts'],
    },
  ],
};
