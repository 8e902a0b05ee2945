import { defineConfig } from '@playwright/test';
import base from './playwright.config';

// Regenerates the README's screenshots: `npx playwright test -c playwright.screenshots.config.ts`.
export default defineConfig({ ...base, testDir: './screenshots' });
