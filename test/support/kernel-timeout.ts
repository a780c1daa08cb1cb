import { jest } from '@jest/globals';

// Namespaces, bpftrace compiles and real races take seconds, not milliseconds.
jest.setTimeout(120_000);
