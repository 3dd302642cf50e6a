export * from './documents.js';
export * from './subjects.js';
